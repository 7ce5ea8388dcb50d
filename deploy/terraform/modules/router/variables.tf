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
  description = "Private subnets for the router instances."
}

variable "public_subnet_ids" {
  type        = list(string)
  description = "Subnets for the Network Load Balancer (public for an internet-facing one)."
}

variable "internal" {
  type        = bool
  description = "Make the load balancer internal (reachable only inside the VPC)."
  default     = false
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "Client networks allowed to reach the router's HTTP port through the load balancer."
}

variable "fleet_security_group_id" {
  type        = string
  description = "Security group of fleet members (gossip)."
}

variable "ami_id" {
  type        = string
  description = "AMI for the routers (Amazon Linux 2023 or Ubuntu 24.04 with the AWS CLI, x86_64)."
}

variable "instance_type" {
  type        = string
  description = "Instance type of the routers (CPU only)."
  default     = "c7i.large"
}

variable "min_size" {
  type        = number
  description = "Fewest routers."
  default     = 2
  validation {
    condition     = var.min_size >= 1
    error_message = "Run at least one router."
  }
}

variable "max_size" {
  type        = number
  description = "Most routers."
  default     = 4
}

variable "lorafleet_binary_url" {
  type        = string
  description = "URL or s3:// object of the lorafleet binary."
}

variable "gossip_seeds" {
  type        = list(string)
  description = "Gossip addresses (host:port) to join."
}

variable "nats_urls" {
  type        = string
  description = "NATS client URLs, comma-separated."
}

variable "base_model" {
  type        = string
  description = "Name clients use for the base model (the workers' --model-name)."
  default     = "model"
}

variable "gossip_key_parameter" {
  type        = string
  description = "SSM Parameter Store name of the base64 gossip encryption key (SecureString)."
}

variable "instance_profile_name" {
  type        = string
  description = "Instance profile that may read the binary and the gossip key parameter."
}
