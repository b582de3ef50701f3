# The pre-baked GPU node image: NVIDIA driver, the engine, the fleet agent and its units, all
# installed here at bake time. Nothing is installed at boot: cloud-init only writes
# /etc/fleet-agent/agent.toml (and the API key) from the launch template, then the units start.
#
#   uv build --package fleet-agent --out-dir dist/
#   packer init node_image/packer && packer build \
#     -var engine=vllm -var agent_wheel=dist/fleet_agent-0.1.0-py3-none-any.whl node_image/packer
#
# One AMI per engine (vllm | ollama | llamacpp); the node pool picks the AMI by the pool's engine.

packer {
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "engine" {
  type        = string
  default     = "vllm"
  description = "The engine baked in: vllm, ollama or llamacpp."
  validation {
    condition     = contains(["vllm", "ollama", "llamacpp"], var.engine)
    error_message = "The engine must be one of vllm, ollama, llamacpp."
  }
}

variable "agent_wheel" {
  type        = string
  description = "Path to the fleet-agent wheel (uv build --package fleet-agent)."
}

variable "nvidia_driver_branch" {
  type        = string
  default     = "570"
  description = "Ubuntu's nvidia-driver-<branch>-server package: a datacenter (production) branch."
}

variable "vllm_version" {
  type    = string
  default = "0.11.0"
}

variable "ollama_version" {
  type    = string
  default = "0.12.6"
}

variable "llamacpp_release" {
  type        = string
  default     = "b6500"
  description = "llama.cpp release tag whose CUDA build provides llama-server."
}

variable "build_instance_type" {
  type        = string
  default     = "g5.xlarge"
  description = "A GPU instance, so the bake can check the driver with nvidia-smi."
}

locals {
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())
}

source "amazon-ebs" "gpu_node" {
  region        = var.region
  instance_type = var.build_instance_type
  ssh_username  = "ubuntu"
  ami_name      = "inference-fleet-gpu-${var.engine}-${local.stamp}"

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720477270"] # Canonical
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 100
    volume_type           = "gp3"
    delete_on_termination = true
  }

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only, as the agent speaks it
  }

  tags = {
    Project    = "inference-fleet"
    Component  = "gpu-node-image"
    Engine     = var.engine
    BaseAMI    = "{{ .SourceAMI }}"
    BuildStamp = local.stamp
  }
}

build {
  sources = ["source.amazon-ebs.gpu_node"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/fleet-image/systemd /tmp/fleet-image/config"]
  }

  provisioner "file" {
    source      = var.agent_wheel
    destination = "/tmp/fleet-image/"
  }

  provisioner "file" {
    source      = "${path.root}/../systemd/"
    destination = "/tmp/fleet-image/systemd"
  }

  provisioner "file" {
    source      = "${path.root}/../config/agent.example.toml"
    destination = "/tmp/fleet-image/config/agent.example.toml"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "sudo -E bash '{{ .Path }}'"
    environment_vars = [
      "ENGINE=${var.engine}",
      "NVIDIA_DRIVER_BRANCH=${var.nvidia_driver_branch}",
      "VLLM_VERSION=${var.vllm_version}",
      "OLLAMA_VERSION=${var.ollama_version}",
      "LLAMACPP_RELEASE=${var.llamacpp_release}",
      "STAGING=/tmp/fleet-image",
    ]
  }

  post-processor "manifest" {
    output     = "packer-manifest-${var.engine}.json"
    strip_path = true
  }
}
