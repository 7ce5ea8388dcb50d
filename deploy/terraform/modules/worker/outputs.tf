output "adapters_bucket" {
  description = "S3 bucket the workers sync adapters from (name/ or org/name/ directories in PEFT format)."
  value       = aws_s3_bucket.adapters.bucket
}

output "autoscaling_group_name" {
  description = "The workers' autoscaling group (start an instance refresh to roll a new binary)."
  value       = aws_autoscaling_group.worker.name
}

output "security_group_id" {
  description = "The workers' security group."
  value       = aws_security_group.worker.id
}
