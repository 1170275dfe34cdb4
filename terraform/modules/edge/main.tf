# codex-edge in a customer's VPC: ECS Fargate tasks in private subnets
# behind an internal load balancer (TLS 1.3 only), a customer-managed KMS
# key only the tasks can use, Postgres and Redis (created or existing), and
# nothing reachable from outside the listed client networks. The decisions
# (names, security group rules, the edge's environment) are made in
# modules/plan, which has no provider and is tested offline.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_subnet" "private" {
  for_each = toset(var.private_subnet_ids)
  id       = each.value
}

module "plan" {
  source = "./modules/plan"

  name                              = var.name
  container_port                    = local.container_port
  listener_port                     = var.listener_port
  allowed_client_cidrs              = var.allowed_client_cidrs
  allowed_client_security_group_ids = var.allowed_client_security_group_ids
  provider_egress_cidrs             = var.provider_egress_cidrs
  database_port                     = var.database_port
  redis_port                        = var.redis_port
  database_security_group           = var.create_database ? "database" : var.database_security_group_id
  redis_security_group              = var.create_redis ? "redis" : var.redis_security_group_id
  share_metrics                     = var.share_metrics
  controlplane_url                  = var.controlplane_url
  controlplane_nats_cidrs           = var.controlplane_nats_cidrs
  controlplane_nats_port            = var.controlplane_nats_port
  kek                               = var.kek
  kms_key_arn                       = var.kek == "awskms" ? aws_kms_key.kek[0].arn : ""
  kms_endpoint_url                  = var.kms_endpoint_url
  provider_api_key_secrets          = var.provider_api_key_secrets
  database_app_role                 = var.database_app_role
  log_level                         = var.log_level
  upstream_timeouts                 = var.upstream_timeouts
  max_body_bytes                    = var.max_body_bytes
  telemetry_window                  = var.telemetry_window
  extra_environment                 = var.extra_environment
  org_kms_key_arns                  = var.org_kms_key_arns
  controlplane_pins                 = var.controlplane_pins
  # The load balancer lives in the private subnets: its X-Forwarded-For
  # is the one the edge trusts. The edge tasks and anything else there
  # share those networks, but the edge's security group admits only the
  # load balancer's (plan: "edge-in-lb"), so no other host in them can
  # reach the edge to name a client address (deploytest checks it).
  trusted_proxy_cidrs = [for s in data.aws_subnet.private : s.cidr_block]

  secret_arns = {
    database_url       = var.create_database ? "${aws_secretsmanager_secret.database_url[0].arn}:url::" : var.database_url_secret_arn
    redis_url          = var.create_redis ? aws_secretsmanager_secret.redis_url[0].arn : var.redis_url_secret_arn
    byok_key           = var.byok_key_secret_arn
    byok_previous_keys = var.byok_previous_keys_secret_arn
    enrollment_token   = var.enrollment_token_secret_arn
  }
}

locals {
  # The edge listens here inside each task (TLS 1.3, its own certificate).
  container_port = 8443

  names     = module.plan.names
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  tags = merge(var.tags, { "app.kubernetes.io/name" = "codex-edge", "codex:module" = "terraform/modules/edge" })

  tls_secret_arn = var.tls_certificate_secret_arn != "" ? var.tls_certificate_secret_arn : aws_secretsmanager_secret.tls[0].arn

  # A listener policy that allows TLS 1.3 only (DESIGN §3). Note that
  # ELBSecurityPolicy-TLS13-1-2-* policies also allow TLS 1.2.
  ssl_policy = var.fips_tls_policy ? "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04" : "ELBSecurityPolicy-TLS13-1-3-2021-06"
}
