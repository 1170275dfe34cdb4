output "endpoint" {
  description = "Internal DNS name of the load balancer; point a DNS record of certificate_arn's name at it (alias), then use https://<name>/v1 as the SDK base URL."
  value       = aws_lb.this.dns_name
}

output "load_balancer_arn" {
  description = "ARN of the internal load balancer."
  value       = aws_lb.this.arn
}

output "load_balancer_zone_id" {
  description = "Hosted zone id of the load balancer, for a Route 53 alias record."
  value       = aws_lb.this.zone_id
}

output "edge_security_group_id" {
  description = "Security group of the edge tasks; allow it on existing Postgres and Redis groups when create_database or create_redis is false."
  value       = aws_security_group.edge.id
}

output "load_balancer_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.load_balancer.id
}

output "kms_key_arn" {
  description = "ARN of the master key (kek = \"awskms\"), or null with BYOK. The edge gets it as CODEX_KEK=awskms:<arn>."
  value       = var.kek == "awskms" ? aws_kms_key.kek[0].arn : null
}

output "task_role_arn" {
  description = "IAM role of the edge tasks, the only principal allowed to use the master key."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "IAM role ECS uses to pull the image, write logs and read the secrets."
  value       = aws_iam_role.execution.arn
}

output "ecs_cluster_arn" {
  description = "ECS cluster the edge runs in."
  value       = local.cluster_arn
}

output "ecs_service_name" {
  description = "Name of the edge's ECS service."
  value       = aws_ecs_service.edge.name
}

output "edge_task_definition_arn" {
  description = "Task definition of the edge; run it with a command override for CLI tasks (orgs, providers, keys)."
  value       = aws_ecs_task_definition.edge.arn
}

output "migrate_task_definition_arn" {
  description = "Task definition running `codex-edge migrate` as the owner role (null when no owner URL is known)."
  value       = length(aws_ecs_task_definition.migrate) > 0 ? aws_ecs_task_definition.migrate[0].arn : null
}

output "bootstrap_task_definition_arn" {
  description = "Task definition creating the application role in the created database; run it once before the first migrate (null with an existing database)."
  value       = var.create_database ? aws_ecs_task_definition.bootstrap[0].arn : null
}

output "log_group_name" {
  description = "CloudWatch log group of the edge (structured JSON; never prompts, answers, keys or credentials)."
  value       = aws_cloudwatch_log_group.edge.name
}

output "database_endpoint" {
  description = "Address of the created Postgres instance (null when an existing one is used)."
  value       = var.create_database ? aws_db_instance.this[0].address : null
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret holding CODEX_DATABASE_URL (application role)."
  value       = module.plan.secrets[index(module.plan.secrets[*].name, "CODEX_DATABASE_URL")].valueFrom
}

output "database_owner_url_secret_arn" {
  description = "Secrets Manager secret holding the owner role's URL, for migrations (null when not known)."
  value       = var.create_database ? aws_secretsmanager_secret.database_owner_url[0].arn : (var.database_owner_url_secret_arn != "" ? var.database_owner_url_secret_arn : null)
}

output "redis_endpoint" {
  description = "Primary endpoint of the created Redis replication group (null when an existing one is used)."
  value       = var.create_redis ? aws_elasticache_replication_group.this[0].primary_endpoint_address : null
}

output "environment" {
  description = "The edge container's non-secret environment (names and values), for review."
  value       = module.plan.environment
}

output "secret_environment_names" {
  description = "Names of the edge's variables that come from Secrets Manager (values never leave Secrets Manager and ECS)."
  value       = module.plan.secrets[*].name
}
