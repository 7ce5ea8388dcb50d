output "vpc_id" {
  description = "The VPC the fleet runs in."
  value       = local.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets for the fleet's instances."
  value       = local.private_subnet_ids
}

output "public_subnet_ids" {
  description = "Public subnets for the router's load balancer."
  value       = local.public_subnet_ids
}

output "fleet_security_group_id" {
  description = "Security group every fleet member carries (gossip between members)."
  value       = aws_security_group.fleet.id
}
