output "urls" {
  description = "NATS client URLs, comma-separated, as lorafleet --nats takes them."
  value       = join(",", [for ip in var.private_ips : "nats://${ip}:4222"])
}

output "gossip_seeds" {
  description = "Fixed gossip addresses (host:port) routers and workers join."
  value       = [for ip in var.private_ips : "${ip}:7946"]
}
