# The edge in an existing VPC, reusing an existing Postgres and Redis, with
# the customer's own master key (BYOK) from Secrets Manager instead of KMS.
# The module changes no group it does not own: the two rules below let the
# edge into the existing stores.

module "edge" {
  source = "../../modules/edge"

  name                              = "codex-edge"
  vpc_id                            = var.vpc_id
  private_subnet_ids                = var.private_subnet_ids
  allowed_client_security_group_ids = var.client_security_group_ids
  certificate_arn                   = var.certificate_arn
  image                             = var.image

  create_database               = false
  database_url_secret_arn       = var.database_url_secret_arn
  database_owner_url_secret_arn = var.database_owner_url_secret_arn
  database_security_group_id    = var.database_security_group_id

  create_redis            = false
  redis_url_secret_arn    = var.redis_url_secret_arn
  redis_security_group_id = var.redis_security_group_id

  kek                 = "byok"
  byok_key_secret_arn = var.byok_key_secret_arn

  provider_api_key_secrets = { OPENAI_API_KEY = var.openai_api_key_secret_arn }
}

resource "aws_vpc_security_group_ingress_rule" "database_from_edge" {
  security_group_id            = var.database_security_group_id
  description                  = "codex-edge tasks to Postgres"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = module.edge.edge_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_edge" {
  security_group_id            = var.redis_security_group_id
  description                  = "codex-edge tasks to Redis"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = module.edge.edge_security_group_id
}
