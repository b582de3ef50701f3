"""The fleet controller: per GPU region, reads four signals about every pool node (heartbeats in Redis,
its own poll of the agent, the load balancer's target health, the Auto Scaling / EC2 state), decides with
one table (decision.py) and acts through Auto Scaling, SSM and EC2, a limited share of a pool at a time."""
