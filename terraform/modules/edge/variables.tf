# ---- identity and network -------------------------------------------------

variable "name" {
  description = "Name prefix of every resource (lower case letters, digits and hyphens; 2-24 characters)."
  type        = string
  default     = "codex-edge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.name))
    error_message = "name must be 2-24 characters of lower case letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC the edge runs in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two, in different availability zones) for the load balancer, the edge tasks, Postgres and Redis. The tasks get no public IP: they reach providers through the subnets' NAT gateway or proxy."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "private_subnet_ids must list at least two subnet ids (subnet-...)."
  }
}

variable "allowed_client_cidrs" {
  description = "CIDR blocks of the clients (SDKs, services) allowed to reach the edge's listener. 0.0.0.0/0 and ::/0 are refused: the load balancer is internal."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_client_cidrs : can(cidrhost(c, 0)) && !can(regex("/0$", c))])
    error_message = "allowed_client_cidrs must hold CIDR blocks narrower than /0."
  }
}

variable "allowed_client_security_group_ids" {
  description = "Security groups whose members may reach the edge's listener."
  type        = list(string)
  default     = []
}

variable "provider_egress_cidrs" {
  description = "Where the edge may open HTTPS connections (AI providers, AWS KMS, Secrets Manager, CloudWatch Logs). Provider addresses are not fixed; narrow this when an egress proxy or VPC endpoints carry that traffic."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# ---- load balancer --------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate of the name clients use (for example edge.corp.example.com), served by the internal load balancer."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "listener_port" {
  description = "Port of the HTTPS listener clients connect to."
  type        = number
  default     = 443
}

variable "fips_tls_policy" {
  description = "Use the FIPS variant of the TLS 1.3-only listener policy (ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04) instead of ELBSecurityPolicy-TLS13-1-3-2021-06. Both allow TLS 1.3 only."
  type        = bool
  default     = false
}

variable "load_balancer_idle_timeout" {
  description = "Seconds the load balancer keeps a connection with no bytes flowing. Streams and long completions wait on the provider, so this is longer than the default 60."
  type        = number
  default     = 900

  validation {
    condition     = var.load_balancer_idle_timeout >= 60 && var.load_balancer_idle_timeout <= 4000
    error_message = "load_balancer_idle_timeout must be between 60 and 4000 seconds."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer, the database and the cache from deletion."
  type        = bool
  default     = true
}

# ---- edge tasks -----------------------------------------------------------

variable "image" {
  description = "The codex-edge container image (built from deploy/docker/edge.Dockerfile), by digest or version tag."
  type        = string

  validation {
    condition     = can(regex("(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]*)$", var.image)) && !can(regex(":latest$", var.image))
    error_message = "image must be pinned by digest (@sha256:...) or a version tag, never :latest."
  }
}

variable "tls_init_image" {
  description = "Small image with a POSIX shell, run once per task before the edge to write its TLS files and own its data volume (the edge image has no shell)."
  type        = string
  default     = "public.ecr.aws/docker/library/busybox:1.37.0"
}

variable "cpu_architecture" {
  description = "CPU architecture of the tasks: ARM64 (Graviton) or X86_64; the image must be built for it."
  type        = string
  default     = "ARM64"

  validation {
    condition     = contains(["ARM64", "X86_64"], var.cpu_architecture)
    error_message = "cpu_architecture must be ARM64 or X86_64."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Fargate task memory in MiB."
  type        = number
  default     = 2048
}

variable "desired_count" {
  description = "Edge tasks to start with; auto scaling moves it between min_count and max_count."
  type        = number
  default     = 2
}

variable "min_count" {
  description = "Fewest edge tasks (at least 2 for availability)."
  type        = number
  default     = 2

  validation {
    condition     = var.min_count >= 1
    error_message = "min_count must be at least 1."
  }
}

variable "max_count" {
  description = "Most edge tasks."
  type        = number
  default     = 10
}

variable "cpu_target_percent" {
  description = "Average task CPU utilization auto scaling aims for."
  type        = number
  default     = 60
}

variable "ecs_cluster_arn" {
  description = "Existing ECS cluster to run in; empty creates one (with Container Insights)."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Retention of the edge's CloudWatch log group (the logs never contain prompts, answers or keys)."
  type        = number
  default     = 90
}

variable "log_kms_key_arn" {
  description = "KMS key encrypting the log group; empty uses CloudWatch Logs' own encryption."
  type        = string
  default     = ""
}

variable "tls_certificate_secret_arn" {
  description = "Secrets Manager secret (JSON with keys cert and key, PEM) the edge tasks serve the load balancer with. Empty: the module generates a self-signed certificate (the load balancer does not verify target certificates; clients only see certificate_arn)."
  type        = string
  default     = ""
}

# ---- master key -----------------------------------------------------------

variable "kek" {
  description = "Master key provider for the per-org data keys: \"awskms\" (a customer-managed KMS key this module creates, rotation on, usable only by the edge's task role) or \"byok\" (the customer's own 256-bit key from Secrets Manager)."
  type        = string
  default     = "awskms"

  validation {
    condition     = contains(["awskms", "byok"], var.kek)
    error_message = "kek must be \"awskms\" or \"byok\"."
  }
}

variable "org_kms_key_arns" {
  description = "Cloud mode (DESIGN §11): org id → ARN of the org's own KMS key in the customer's AWS account (`codex-edge orgs create NAME --kek awskms:<arn>`). The task role may use each key only with the encryption context org_id = that org, and may schedule its deletion (crypto shred --schedule-key-deletion); the customer's key policy must grant the same (README, \"Per-org master keys\"). The deployment's own master key (kek) is never one of them."
  type        = map(string)
  default     = {}
}

variable "kms_key_administrator_arns" {
  description = "IAM principals allowed to administer (not use) the KMS key; include the principal running Terraform, or KMS refuses the policy. Empty: the account root, which delegates administration to IAM policies."
  type        = list(string)
  default     = []
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of the KMS key takes effect; deleting it crypto-shreds all content."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "kms_endpoint_url" {
  description = "KMS endpoint override passed as AWS_ENDPOINT_URL_KMS (a KMS interface endpoint without private DNS); empty uses the regional endpoint."
  type        = string
  default     = ""
}

variable "byok_key_secret_arn" {
  description = "With kek = \"byok\": Secrets Manager secret holding the customer's 256-bit key (base64 or hex), passed as CODEX_BYOK_KEY. An ECS JSON-key suffix (arn...:current::) is allowed."
  type        = string
  default     = ""
}

variable "byok_previous_keys_secret_arn" {
  description = "With kek = \"byok\": optional Secrets Manager secret holding older key versions, comma-separated (CODEX_BYOK_PREVIOUS_KEYS)."
  type        = string
  default     = ""
}

variable "secrets_kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the Secrets Manager secrets passed in; the task execution role may decrypt with them."
  type        = list(string)
  default     = []
}

# ---- Postgres -------------------------------------------------------------

variable "create_database" {
  description = "Create an RDS for PostgreSQL instance (encrypted, private, IAM authentication on). False: use an existing one through database_url_secret_arn."
  type        = bool
  default     = true
}

variable "database_url_secret_arn" {
  description = "With create_database = false: Secrets Manager secret holding the application role's Postgres URL (CODEX_DATABASE_URL), with sslmode=verify-full."
  type        = string
  default     = ""
}

variable "database_owner_url_secret_arn" {
  description = "With create_database = false: optional Secrets Manager secret holding the owner role's URL, for the migrate task."
  type        = string
  default     = ""
}

variable "database_security_group_id" {
  description = "With create_database = false: the existing database's security group; allow ingress from the output edge_security_group_id on database_port there."
  type        = string
  default     = ""
}

variable "database_port" {
  description = "Postgres port."
  type        = number
  default     = 5432
}

variable "database_engine_version" {
  description = "RDS PostgreSQL major version."
  type        = string
  default     = "17"
}

variable "database_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "database_allocated_storage" {
  description = "RDS storage in GiB (grows automatically up to four times this)."
  type        = number
  default     = 50
}

variable "database_multi_az" {
  description = "Run RDS with a standby in a second availability zone."
  type        = bool
  default     = true
}

variable "database_backup_retention_days" {
  description = "Days RDS keeps automated backups."
  type        = number
  default     = 14
}

variable "psql_image" {
  description = "Image with psql for the one-off bootstrap task that creates the application role in the created database (create_database = true)."
  type        = string
  default     = "public.ecr.aws/docker/library/postgres:17.6-alpine"
}

variable "database_app_role" {
  description = "Postgres role the edge serves as (CODEX_DATABASE_APP_ROLE); it owns no table and cannot bypass row-level security."
  type        = string
  default     = "codex_app"
}

# ---- Redis ----------------------------------------------------------------

variable "create_redis" {
  description = "Create an ElastiCache Redis replication group (encryption in transit and at rest, auth token). False: use an existing one through redis_url_secret_arn."
  type        = bool
  default     = true
}

variable "redis_url_secret_arn" {
  description = "With create_redis = false: Secrets Manager secret holding the rediss:// URL with its auth token (CODEX_REDIS_URL)."
  type        = string
  default     = ""
}

variable "redis_security_group_id" {
  description = "With create_redis = false: the existing cache's security group; allow ingress from the output edge_security_group_id on redis_port there."
  type        = string
  default     = ""
}

variable "redis_port" {
  description = "Redis port."
  type        = number
  default     = 6379
}

variable "redis_engine_version" {
  description = "ElastiCache Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_replicas" {
  description = "Read replicas next to the primary (at least 1 for automatic failover)."
  type        = number
  default     = 1
}

# ---- providers and control plane -------------------------------------------

variable "provider_api_key_secrets" {
  description = "AI provider credentials by environment variable name (as given to `codex-edge providers set --api-key-env NAME`), each a Secrets Manager ARN. Names must not start with CODEX_ or AWS_."
  type        = map(string)
  default     = {}
}

variable "share_metrics" {
  description = "Opt-in sharing of aggregated usage metrics (never content, never per-request rows) with the persīv control plane. Off by default: the edge then opens no connection to the control plane."
  type        = bool
  default     = false
}

variable "controlplane_url" {
  description = "Control plane URL for enrollment (https://...). Needed only when share_metrics is true."
  type        = string
  default     = ""
}

variable "controlplane_pins" {
  description = "CODEX_CONTROLPLANE_PINS: base64 SHA-256 digests of the control plane's TLS public keys (current and backup, comma-separated), checked on enrollment and NATS while share_metrics is true. Empty: the CAs alone decide."
  type        = string
  default     = ""
}

variable "controlplane_nats_cidrs" {
  description = "CIDR blocks of the control plane's NATS endpoint; egress to them on controlplane_nats_port exists only while share_metrics is true."
  type        = list(string)
  default     = []
}

variable "controlplane_nats_port" {
  description = "TCP port of the control plane's NATS endpoint (TLS)."
  type        = number
  default     = 4222
}

variable "enrollment_token_secret_arn" {
  description = "Secrets Manager secret holding the one-time enrollment token created in the control plane dashboard (CODEX_ENROLLMENT_TOKEN). Needed only when share_metrics is true; the token itself never goes through Terraform."
  type        = string
  default     = ""
}

# ---- edge settings ----------------------------------------------------------

variable "log_level" {
  description = "Edge log level: debug, info, warn or error."
  type        = string
  default     = "info"
}

variable "upstream_timeouts" {
  description = "Provider timeouts (Go durations): connect, header (until the provider's response headers), idle (between two chunks of a stream)."
  type = object({
    connect = optional(string, "10s")
    header  = optional(string, "10m")
    idle    = optional(string, "5m")
  })
  default = {}
}

variable "max_body_bytes" {
  description = "Request body limit in bytes."
  type        = number
  default     = 33554432
}

variable "telemetry_window" {
  description = "Aggregation window of shared metrics (Go duration)."
  type        = string
  default     = "60s"
}

variable "extra_environment" {
  description = "Further non-secret edge settings by variable name (for example CODEX_METADATA_QUEUE = \"131072\"); they cannot replace the ones the module sets."
  type        = map(string)
  default     = {}
}
