variable "name" {
  type        = string
  description = "Name prefix for every resource."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the fleet."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets, one per NATS node (in order of private_ips)."
  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "Give at least one subnet."
  }
}

variable "private_ips" {
  type        = list(string)
  description = "Fixed private IPs of the three NATS nodes, each inside the matching subnet. They are also the fleet's gossip seeds."
  validation {
    condition     = length(var.private_ips) == 3 && alltrue([for ip in var.private_ips : can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+$", ip))])
    error_message = "Give exactly three IPv4 addresses."
  }
}

variable "fleet_security_group_id" {
  type        = string
  description = "Security group of fleet members: the only ones allowed to reach NATS clients (4222)."
}

variable "ami_id" {
  type        = string
  description = "AMI for the NATS nodes (Amazon Linux 2023 or Ubuntu 24.04, x86_64)."
}

variable "instance_type" {
  type        = string
  description = "Instance type of the NATS nodes."
  default     = "t3.small"
}

variable "nats_version" {
  type        = string
  description = "nats-server release to install."
  default     = "2.15.2"
  validation {
    condition     = can(regex("^\\d+\\.\\d+\\.\\d+$", var.nats_version))
    error_message = "nats_version is a release number such as 2.15.2."
  }
}

variable "instance_profile_name" {
  type        = string
  description = "Instance profile that may read the binary (when it is an s3:// object) and the gossip key parameter."
}

variable "gossip_key_parameter" {
  type        = string
  description = "SSM Parameter Store name of the base64 gossip encryption key (SecureString), for the seed routers."
}

variable "lorafleet_binary_url" {
  type        = string
  description = "URL or s3:// object of the lorafleet binary; each NATS node also runs a router bound to localhost as a fixed gossip seed."
}
