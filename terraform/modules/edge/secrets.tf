# Secrets the module generates. Their values are in the Terraform state
# (random_password, tls_private_key): keep the state in an encrypted,
# access-controlled backend. Secrets passed in by ARN never touch the state.

# ---- TLS between the load balancer and the tasks ----------------------------
# The edge refuses plain HTTP outside loopback, so the tasks serve TLS 1.3
# too. The load balancer does not verify target certificates; clients only
# ever see certificate_arn.

resource "tls_private_key" "edge" {
  count     = var.tls_certificate_secret_arn == "" ? 1 : 0
  algorithm = "ECDSA"

  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "edge" {
  count = var.tls_certificate_secret_arn == "" ? 1 : 0

  private_key_pem       = tls_private_key.edge[0].private_key_pem
  validity_period_hours = 24 * 365 * 2
  early_renewal_hours   = 24 * 30
  allowed_uses          = ["digital_signature", "server_auth"]
  dns_names             = ["${var.name}.internal"]

  subject {
    common_name  = "${var.name}.internal"
    organization = "codex-edge target"
  }
}

resource "aws_secretsmanager_secret" "tls" {
  count = var.tls_certificate_secret_arn == "" ? 1 : 0

  name_prefix             = "${local.names.secret_prefix}tls-"
  description             = "codex-edge ${var.name}: TLS certificate and key the tasks serve the load balancer with"
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "tls" {
  count = var.tls_certificate_secret_arn == "" ? 1 : 0

  secret_id = aws_secretsmanager_secret.tls[0].id
  secret_string = jsonencode({
    cert = tls_self_signed_cert.edge[0].cert_pem
    key  = tls_private_key.edge[0].private_key_pem
  })
}

# ---- Postgres URLs ------------------------------------------------------------

resource "random_password" "database_owner" {
  count   = var.create_database ? 1 : 0
  length  = 40
  special = false
}

resource "random_password" "database_app" {
  count   = var.create_database ? 1 : 0
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "database_owner_url" {
  count = var.create_database ? 1 : 0

  name_prefix             = "${local.names.secret_prefix}database-owner-url-"
  description             = "codex-edge ${var.name}: Postgres owner URL (migrations only)"
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "database_owner_url" {
  count = var.create_database ? 1 : 0

  secret_id     = aws_secretsmanager_secret.database_owner_url[0].id
  secret_string = "postgres://codex_owner:${random_password.database_owner[0].result}@${aws_db_instance.this[0].address}:${var.database_port}/codex?sslmode=require"
}

resource "aws_secretsmanager_secret" "database_url" {
  count = var.create_database ? 1 : 0

  name_prefix             = "${local.names.secret_prefix}database-url-"
  description             = "codex-edge ${var.name}: the application role's Postgres URL (key url, CODEX_DATABASE_URL) and password (key password, for the bootstrap task)"
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "database_url" {
  count = var.create_database ? 1 : 0

  secret_id = aws_secretsmanager_secret.database_url[0].id
  # sslmode=require: RDS forces TLS (rds.force_ssl); verify-full would need
  # the RDS CA bundle in the image, which the distroless image lacks.
  secret_string = jsonencode({
    url      = "postgres://${var.database_app_role}:${random_password.database_app[0].result}@${aws_db_instance.this[0].address}:${var.database_port}/codex?sslmode=require"
    password = random_password.database_app[0].result
  })
}

# ---- Redis URL ------------------------------------------------------------------

resource "random_password" "redis" {
  count   = var.create_redis ? 1 : 0
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "redis_url" {
  count = var.create_redis ? 1 : 0

  name_prefix             = "${local.names.secret_prefix}redis-url-"
  description             = "codex-edge ${var.name}: Redis URL with its auth token (CODEX_REDIS_URL)"
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  count = var.create_redis ? 1 : 0

  secret_id     = aws_secretsmanager_secret.redis_url[0].id
  secret_string = "rediss://:${random_password.redis[0].result}@${aws_elasticache_replication_group.this[0].primary_endpoint_address}:${var.redis_port}/0"
}
