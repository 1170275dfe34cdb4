# Decision logic of the edge module, kept free of providers so it can be
# tested offline with `tofu test`: resource names, the security group rules
# and the edge's environment. The parent module only turns these values into
# AWS resources.

locals {
  # AWS limits: load balancer and target group names 32, ElastiCache
  # replication group ids 40, RDS identifiers 63. name is at most 24.
  names = {
    cluster            = var.name
    service            = var.name
    task_family        = var.name
    migrate_family     = "${var.name}-migrate"
    log_group          = "/codex/${var.name}/edge"
    load_balancer      = "${var.name}-lb"
    target_group       = "${var.name}-tg"
    kms_alias          = "alias/${var.name}-kek"
    database           = "${var.name}-pg"
    database_subnets   = "${var.name}-pg"
    redis              = "${var.name}-redis"
    redis_subnets      = "${var.name}-redis"
    secret_prefix      = "${var.name}/"
    task_role          = "${var.name}-task"
    execution_role     = "${var.name}-execution"
    sg_load_balancer   = "${var.name}-lb"
    sg_edge            = "${var.name}-edge"
    sg_database        = "${var.name}-pg"
    sg_redis           = "${var.name}-redis"
    tls_cert_file      = "${var.tls_dir}/cert.pem"
    tls_key_file       = "${var.tls_dir}/key.pem"
    data_volume        = "data"
    tls_volume         = "tls"
    edge_container     = "edge"
    tls_init_container = "tls-init"
  }

  # One rule per (group, direction, port, peer). security_group and peer
  # name the module's groups (load_balancer, edge, database, redis) or give
  # an existing group's id; cidr is the alternative to peer. No ingress rule
  # ever has a /0 source: clients are listed, and the variables refuse /0.
  client_cidr_rules = {
    for c in var.allowed_client_cidrs : "lb-in-clients-${c}" => {
      security_group = "load_balancer", direction = "ingress", port = var.listener_port, cidr = c, peer = null
      description    = "clients to the edge's listener"
    }
  }
  client_sg_rules = {
    for i, sg in var.allowed_client_security_group_ids : "lb-in-client-sg-${i}" => {
      security_group = "load_balancer", direction = "ingress", port = var.listener_port, cidr = null, peer = sg
      description    = "client security group to the edge's listener"
    }
  }
  core_rules = {
    "lb-out-edge" = {
      security_group = "load_balancer", direction = "egress", port = var.container_port, cidr = null, peer = "edge"
      description    = "load balancer to the edge tasks"
    }
    "edge-in-lb" = {
      security_group = "edge", direction = "ingress", port = var.container_port, cidr = null, peer = "load_balancer"
      description    = "load balancer to the edge tasks"
    }
    "edge-out-database" = {
      security_group = "edge", direction = "egress", port = var.database_port, cidr = null, peer = var.database_security_group
      description    = "edge to Postgres"
    }
    "edge-out-redis" = {
      security_group = "edge", direction = "egress", port = var.redis_port, cidr = null, peer = var.redis_security_group
      description    = "edge to Redis"
    }
  }
  created_store_rules = merge(
    var.database_security_group == "database" ? {
      "database-in-edge" = {
        security_group = "database", direction = "ingress", port = var.database_port, cidr = null, peer = "edge"
        description    = "edge to Postgres"
      }
    } : {},
    var.redis_security_group == "redis" ? {
      "redis-in-edge" = {
        security_group = "redis", direction = "ingress", port = var.redis_port, cidr = null, peer = "edge"
        description    = "edge to Redis"
      }
    } : {},
  )
  egress_https_rules = {
    for c in var.provider_egress_cidrs : "edge-out-https-${c}" => {
      security_group = "edge", direction = "egress", port = 443, cidr = c, peer = null
      description    = "edge to AI providers, KMS, Secrets Manager and CloudWatch Logs over HTTPS"
    }
  }
  # The control plane is reachable only while sharing is on.
  nats_rules = {
    for c in(var.share_metrics ? var.controlplane_nats_cidrs : []) : "edge-out-nats-${c}" => {
      security_group = "edge", direction = "egress", port = var.controlplane_nats_port, cidr = c, peer = null
      description    = "edge to the control plane's NATS (metric sharing on)"
    }
  }
  security_group_rules = merge(local.client_cidr_rules, local.client_sg_rules, local.core_rules, local.created_store_rules, local.egress_https_rules, local.nats_rules)

  kek = var.kek == "awskms" ? "awskms:${var.kms_key_arn}" : "byok"

  # DESIGN §8: the variables the edge reads. Secrets never appear here.
  module_environment = merge(
    {
      CODEX_LISTEN                   = "0.0.0.0:${var.container_port}"
      CODEX_ADMIN_LISTEN             = "127.0.0.1:8081"
      CODEX_DATA_DIR                 = var.data_dir
      CODEX_DATABASE_APP_ROLE        = var.database_app_role
      CODEX_TLS_CERT                 = local.names.tls_cert_file
      CODEX_TLS_KEY                  = local.names.tls_key_file
      CODEX_KEK                      = local.kek
      CODEX_UPSTREAM_CONNECT_TIMEOUT = var.upstream_timeouts.connect
      CODEX_UPSTREAM_HEADER_TIMEOUT  = var.upstream_timeouts.header
      CODEX_UPSTREAM_IDLE_TIMEOUT    = var.upstream_timeouts.idle
      CODEX_MAX_BODY_BYTES           = tostring(var.max_body_bytes)
      CODEX_TELEMETRY_WINDOW         = var.telemetry_window
      CODEX_LOG_LEVEL                = var.log_level
      CODEX_SHARE_METRICS            = tostring(var.share_metrics)
    },
    var.share_metrics ? { CODEX_CONTROLPLANE_URL = var.controlplane_url } : {},
    var.share_metrics && var.controlplane_pins != "" ? { CODEX_CONTROLPLANE_PINS = var.controlplane_pins } : {},
    length(var.trusted_proxy_cidrs) > 0 ? { CODEX_TRUSTED_PROXIES = join(",", var.trusted_proxy_cidrs) } : {},
    var.kms_endpoint_url != "" ? { AWS_ENDPOINT_URL_KMS = var.kms_endpoint_url } : {},
  )
  environment = merge(var.extra_environment, local.module_environment)

  secrets_wanted = merge(
    {
      CODEX_DATABASE_URL = var.secret_arns.database_url
      CODEX_REDIS_URL    = var.secret_arns.redis_url
    },
    var.kek == "byok" ? { CODEX_BYOK_KEY = var.secret_arns.byok_key } : {},
    var.kek == "byok" && var.secret_arns.byok_previous_keys != "" ? { CODEX_BYOK_PREVIOUS_KEYS = var.secret_arns.byok_previous_keys } : {},
    var.share_metrics && var.secret_arns.enrollment_token != "" ? { CODEX_ENROLLMENT_TOKEN = var.secret_arns.enrollment_token } : {},
    var.provider_api_key_secrets,
  )
  # An empty reference is a missing input: the environment output's
  # preconditions name it; here it is left out.
  secrets = { for k, v in local.secrets_wanted : k => v if v != "" }

  # The ARN part of each reference (without an ECS JSON-key suffix), for the
  # execution role's policy.
  secret_arns = distinct(sort([for v in values(local.secrets) : join(":", slice(split(":", v), 0, min(7, length(split(":", v)))))]))
}
