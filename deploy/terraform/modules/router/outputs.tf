output "url" {
  description = "The router's URL: OpenAI clients use it with /v1 appended."
  value       = "http://${aws_lb.router.dns_name}"
}

output "autoscaling_group_name" {
  description = "The routers' autoscaling group (start an instance refresh to roll a new binary)."
  value       = aws_autoscaling_group.router.name
}

output "security_group_id" {
  description = "The routers' security group (the workers accept HTTP only from it)."
  value       = aws_security_group.router.id
}
