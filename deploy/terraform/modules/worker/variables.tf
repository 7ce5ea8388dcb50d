variable "name" {
  type        = string
  description = "Name prefix for every resource."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the fleet."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets for the workers."
}

variable "fleet_security_group_id" {
  type        = string
  description = "Security group of fleet members (gossip)."
}

variable "router_security_group_id" {
  type        = string
  description = "Security group of the routers: the only clients of the workers' HTTP port."
}

variable "gpu" {
  type        = string
  description = "GPU class, which picks the default instance type: l4 (g6.xlarge), a10g (g5.xlarge) or h100 (p5.48xlarge)."
  default     = "l4"
  validation {
    condition     = contains(["l4", "a10g", "h100"], var.gpu)
    error_message = "gpu is one of l4, a10g, h100."
  }
}

variable "instance_type" {
  type        = string
  description = "Instance type; null takes the default of the GPU class."
  default     = null
}

variable "ami_id" {
  type        = string
  description = "GPU AMI with the NVIDIA driver and the AWS CLI (e.g. the AWS Deep Learning Base AMI)."
}

variable "min_size" {
  type        = number
  description = "Fewest workers."
  default     = 1
}

variable "max_size" {
  type        = number
  description = "Most workers."
  default     = 4
  validation {
    condition     = var.max_size >= 1
    error_message = "max_size must be at least 1."
  }
}

variable "lorafleet_binary_url" {
  type        = string
  description = "URL or s3:// object of the lorafleet binary built with the cuda tag."
  validation {
    condition     = can(regex("^(https://|s3://)", var.lorafleet_binary_url))
    error_message = "Use an https:// URL or an s3:// object."
  }
}

variable "model_s3_uri" {
  type        = string
  description = "s3:// prefix of the Hugging Face model directory the workers serve."
  validation {
    condition     = startswith(var.model_s3_uri, "s3://")
    error_message = "model_s3_uri is an s3:// prefix."
  }
}

variable "model_name" {
  type        = string
  description = "Name clients use for the base model."
  default     = "model"
}

variable "gossip_seeds" {
  type        = list(string)
  description = "Gossip addresses (host:port) to join."
}

variable "nats_urls" {
  type        = string
  description = "NATS client URLs, comma-separated."
}

variable "gossip_key_parameter" {
  type        = string
  description = "SSM Parameter Store name of the base64 gossip encryption key (SecureString)."
}

variable "gossip_key_parameter_arn" {
  type        = string
  description = "ARN of that parameter, for the workers' IAM policy."
}

variable "binary_s3_arn" {
  type        = string
  description = "ARN of the S3 object (or prefix) holding the binary and the model, readable by the workers; null when both come over https."
  default     = null
}

variable "backend" {
  type        = string
  description = "Kernel backend: cuda for GPU instances (the binary must be built with the cuda tag), or cpu."
  default     = "cuda"
  validation {
    condition     = contains(["cuda", "cpu"], var.backend)
    error_message = "backend is cuda or cpu."
  }
}
