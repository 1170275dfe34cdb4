# ElastiCache Redis OSS: encrypted in transit (TLS required) and at rest,
# AUTH token, private subnets, automatic failover across zones.

resource "aws_elasticache_subnet_group" "this" {
  count      = var.create_redis ? 1 : 0
  name       = local.names.redis_subnets
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "aws_elasticache_replication_group" "this" {
  count = var.create_redis ? 1 : 0

  replication_group_id = local.names.redis
  description          = "codex-edge ${var.name}: encrypted cache entries and rate-limit counters"
  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = var.redis_port
  num_cache_clusters   = 1 + var.redis_replicas

  automatic_failover_enabled = var.redis_replicas > 0
  multi_az_enabled           = var.redis_replicas > 0
  subnet_group_name          = aws_elasticache_subnet_group.this[0].name
  security_group_ids         = [aws_security_group.redis[0].id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.redis[0].result
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit = 1
  tags                     = local.tags
}
