output "endpoint" {
  description = "Internal DNS name of the edge's load balancer."
  value       = module.edge.endpoint
}

output "kms_key_arn" {
  description = "The master key only the edge's task role can use."
  value       = module.edge.kms_key_arn
}

output "migrate_task_definition_arn" {
  description = "Run once after apply (and after each upgrade): codex-edge migrate."
  value       = module.edge.migrate_task_definition_arn
}

output "private_subnet_ids" {
  description = "Private subnets, for `aws ecs run-task` of the migrate task."
  value       = aws_subnet.private[*].id
}

output "edge_security_group_id" {
  description = "Security group to run one-off edge tasks (migrate) in."
  value       = module.edge.edge_security_group_id
}
