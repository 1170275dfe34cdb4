output "endpoint" {
  description = "Internal DNS name of the edge's load balancer."
  value       = module.edge.endpoint
}

output "edge_security_group_id" {
  description = "Security group of the edge tasks."
  value       = module.edge.edge_security_group_id
}

output "migrate_task_definition_arn" {
  description = "Run once after apply (and after each upgrade): codex-edge migrate."
  value       = module.edge.migrate_task_definition_arn
}
