output "router_url" {
  description = "Base URL of the cluster: OpenAI clients use it with /v1 appended."
  value       = module.router.url
}

output "adapters_bucket" {
  description = "Upload PEFT adapters here as name/ or org/name/ directories; workers sync it at boot."
  value       = module.worker.adapters_bucket
}

output "worker_autoscaling_group" {
  description = "Start an instance refresh on it to roll a new binary onto the workers."
  value       = module.worker.autoscaling_group_name
}

output "router_autoscaling_group" {
  description = "Start an instance refresh on it to roll a new binary onto the routers."
  value       = module.router.autoscaling_group_name
}
