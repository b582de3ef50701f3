"""`fleet sandbox`: a stack as rendered, running on 127.0.0.1 with the real parts that run here (LiteLLM
with the rendered config, fleet agents over llama.cpp mounting the model store through real JuiceFS on
moto's S3, redis-server with the program's users, the fleet controller's and the region-health sidecar's own
code), and emulations of what cannot run here (Route53, the load balancers, the Auto Scaling group's
replacement, the metadata service, NVML and the GPU, the serverless providers). See fleet/sandbox/cli.py."""
