variable "region" {
  type        = string
  description = "AWS region."
  default     = "us-east-1"
}

variable "name" {
  type        = string
  description = "Name prefix for every resource."
  default     = "lorafleet"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name is 2 to 21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "azs" {
  type        = list(string)
  description = "Availability zones (at least two)."
  default     = ["us-east-1a", "us-east-1b"]
}

variable "ami_id" {
  type        = string
  description = "x86_64 AMI for the NATS nodes and routers (Amazon Linux 2023)."
}

variable "gpu_ami_id" {
  type        = string
  description = "GPU AMI for the workers (NVIDIA driver and AWS CLI, e.g. the AWS Deep Learning Base AMI)."
}

variable "gpu" {
  type        = string
  description = "GPU class of the workers: l4, a10g or h100."
  default     = "l4"
}

variable "workers" {
  type        = number
  description = "Number of GPU workers to start with."
  default     = 2
  validation {
    condition     = var.workers >= 1 && var.workers <= 64
    error_message = "workers is between 1 and 64."
  }
}

variable "lorafleet_binary_url" {
  type        = string
  description = "https:// URL or s3:// object of the lorafleet binary (built with the cuda tag)."
}

variable "model_s3_uri" {
  type        = string
  description = "s3:// prefix of the Hugging Face model directory to serve."
}

variable "artifacts_s3_arn" {
  type        = string
  description = "ARN of the S3 bucket holding the binary and the model (read access for the fleet); null if both come over https."
  default     = null
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "Client networks allowed to call the router."
}
