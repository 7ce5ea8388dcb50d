variable "name" {
  type        = string
  description = "Name prefix for every resource."
}

variable "cidr_block" {
  type        = string
  description = "CIDR block of the VPC created when existing_vpc_id is null."
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrhost(var.cidr_block, 0))
    error_message = "cidr_block must be a valid IPv4 CIDR block."
  }
}

variable "azs" {
  type        = list(string)
  description = "Availability zones to spread subnets over (at least two)."
  validation {
    condition     = length(var.azs) >= 2
    error_message = "Give at least two availability zones."
  }
}

variable "existing_vpc_id" {
  type        = string
  description = "Use this VPC instead of creating one (then give existing_private_subnet_ids and existing_public_subnet_ids)."
  default     = null
}

variable "existing_private_subnet_ids" {
  type        = list(string)
  description = "Private subnets of the existing VPC, for the fleet's instances."
  default     = []
}

variable "existing_public_subnet_ids" {
  type        = list(string)
  description = "Public subnets of the existing VPC, for the router's load balancer."
  default     = []
}
