variable "name" {
  description = "Name prefix of every resource (lower case letters, digits and hyphens; starts with a letter; at most 24 characters so derived names fit AWS limits)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.name))
    error_message = "name must be 2-24 characters of lower case letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "container_port" {
  description = "Port the edge listens on inside the task (CODEX_LISTEN is 0.0.0.0:<port>, TLS 1.3)."
  type        = number
  default     = 8443

  validation {
    condition     = var.container_port >= 1024 && var.container_port <= 65535
    error_message = "container_port must be an unprivileged port (1024-65535): the edge runs as a non-root user."
  }
}

variable "listener_port" {
  description = "Port of the load balancer's HTTPS listener that clients connect to."
  type        = number
  default     = 443
}

variable "allowed_client_cidrs" {
  description = "CIDR blocks allowed to reach the load balancer's listener. Never 0.0.0.0/0 or ::/0: the edge is internal."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_client_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_client_cidrs must hold CIDR blocks such as 10.0.0.0/16."
  }
  validation {
    condition     = alltrue([for c in var.allowed_client_cidrs : !can(regex("/0$", c))])
    error_message = "allowed_client_cidrs must not contain a /0 block (0.0.0.0/0 or ::/0): list the client networks."
  }
}

variable "allowed_client_security_group_ids" {
  description = "Security groups whose members may reach the load balancer's listener."
  type        = list(string)
  default     = []
}

variable "provider_egress_cidrs" {
  description = "Where the edge may open HTTPS (443) connections: AI providers, AWS KMS, Secrets Manager and CloudWatch Logs (directly, through a NAT gateway or VPC endpoints). Provider addresses are not fixed, hence the default."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.provider_egress_cidrs) > 0 && alltrue([for c in var.provider_egress_cidrs : can(cidrhost(c, 0))])
    error_message = "provider_egress_cidrs must hold at least one CIDR block: the edge cannot work without reaching its providers."
  }
}

variable "database_port" {
  description = "Postgres port."
  type        = number
  default     = 5432
}

variable "redis_port" {
  description = "Redis port."
  type        = number
  default     = 6379
}

variable "database_security_group" {
  description = "Security group the edge reaches Postgres in: \"database\" for the one this module creates, or the id of an existing database's group."
  type        = string
  default     = "database"

  validation {
    condition     = var.database_security_group == "database" || can(regex("^sg-[0-9a-f]+$", var.database_security_group))
    error_message = "database_security_group must be \"database\" or a security group id (sg-...)."
  }
}

variable "redis_security_group" {
  description = "Security group the edge reaches Redis in: \"redis\" for the one this module creates, or the id of an existing cache's group."
  type        = string
  default     = "redis"

  validation {
    condition     = var.redis_security_group == "redis" || can(regex("^sg-[0-9a-f]+$", var.redis_security_group))
    error_message = "redis_security_group must be \"redis\" or a security group id (sg-...)."
  }
}

variable "share_metrics" {
  description = "Opt-in sharing of aggregated metrics with the control plane (CODEX_SHARE_METRICS). While false the edge opens no connection to the control plane and no egress rule to it exists."
  type        = bool
  default     = false
}

variable "controlplane_url" {
  description = "Control plane URL the edge enrolls with (CODEX_CONTROLPLANE_URL). Required when share_metrics is true."
  type        = string
  default     = ""

  validation {
    condition     = var.controlplane_url == "" || can(regex("^https://", var.controlplane_url))
    error_message = "controlplane_url must be an https:// URL."
  }
}

variable "controlplane_nats_cidrs" {
  description = "CIDR blocks of the control plane's NATS endpoint; the edge may reach them on controlplane_nats_port only while share_metrics is true."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.controlplane_nats_cidrs : can(cidrhost(c, 0))])
    error_message = "controlplane_nats_cidrs must hold CIDR blocks."
  }
}

variable "controlplane_nats_port" {
  description = "TCP port of the control plane's NATS endpoint (TLS)."
  type        = number
  default     = 4222
}

variable "kek" {
  description = "Master key provider: \"awskms\" (the module's KMS key) or \"byok\" (the customer's 256-bit key from Secrets Manager)."
  type        = string
  default     = "awskms"

  validation {
    condition     = contains(["awskms", "byok"], var.kek)
    error_message = "kek must be \"awskms\" or \"byok\"."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key wrapping the data keys when kek is \"awskms\" (CODEX_KEK=awskms:<arn>)."
  type        = string
  default     = ""
}

variable "secret_arns" {
  description = "Secrets Manager ARNs the edge reads at start-up, by role: database_url, redis_url (required); byok_key, byok_previous_keys, enrollment_token (optional). A JSON key may follow the ARN as ECS allows (arn:...:key::)."
  type = object({
    database_url       = string
    redis_url          = string
    byok_key           = optional(string, "")
    byok_previous_keys = optional(string, "")
    enrollment_token   = optional(string, "")
  })

  validation {
    condition     = alltrue([for k, v in var.secret_arns : v == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", v))])
    error_message = "every secret_arns entry must be empty or a Secrets Manager ARN."
  }
}

variable "provider_api_key_secrets" {
  description = "Provider credentials by environment variable name (the name given to `codex-edge providers set --api-key-env`), each a Secrets Manager ARN. Names must not start with CODEX_ or AWS_."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.provider_api_key_secrets : can(regex("^[A-Z][A-Z0-9_]*$", k)) && !can(regex("^(CODEX|AWS)_", k))])
    error_message = "provider_api_key_secrets keys must be upper-case variable names not starting with CODEX_ or AWS_."
  }
  validation {
    condition     = alltrue([for k, v in var.provider_api_key_secrets : can(regex("^arn:aws[a-z-]*:secretsmanager:", v))])
    error_message = "provider_api_key_secrets values must be Secrets Manager ARNs."
  }
}

variable "tls_dir" {
  description = "Directory inside the task where the TLS certificate and key files are written at start (CODEX_TLS_CERT, CODEX_TLS_KEY)."
  type        = string
  default     = "/run/codex/tls"
}

variable "data_dir" {
  description = "The edge's data directory inside the task (CODEX_DATA_DIR): scratch only; the replicas share the hybrid link's enrollment, spool and ledger in Postgres."
  type        = string
  default     = "/var/lib/codex"
}

variable "database_app_role" {
  description = "Postgres role the migrations grant row access to; the edge serves as this role (CODEX_DATABASE_APP_ROLE)."
  type        = string
  default     = "codex_app"
}

variable "log_level" {
  description = "Edge log level (CODEX_LOG_LEVEL): debug, info, warn or error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be debug, info, warn or error."
  }
}

variable "upstream_timeouts" {
  description = "Provider timeouts in Go duration syntax: connect (CODEX_UPSTREAM_CONNECT_TIMEOUT), header (CODEX_UPSTREAM_HEADER_TIMEOUT), idle (CODEX_UPSTREAM_IDLE_TIMEOUT)."
  type = object({
    connect = optional(string, "10s")
    header  = optional(string, "10m")
    idle    = optional(string, "5m")
  })
  default = {}

  validation {
    condition     = alltrue([for k, v in var.upstream_timeouts : can(regex("^([0-9]+(ms|s|m|h))+$", v))])
    error_message = "upstream_timeouts values must be Go durations such as 10s or 5m."
  }
}

variable "max_body_bytes" {
  description = "Request body limit in bytes (CODEX_MAX_BODY_BYTES)."
  type        = number
  default     = 33554432

  validation {
    condition     = var.max_body_bytes > 0 && floor(var.max_body_bytes) == var.max_body_bytes
    error_message = "max_body_bytes must be a positive whole number."
  }
}

variable "telemetry_window" {
  description = "Aggregation window of shared metrics in Go duration syntax (CODEX_TELEMETRY_WINDOW)."
  type        = string
  default     = "60s"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.telemetry_window))
    error_message = "telemetry_window must be a Go duration such as 60s."
  }
}

variable "extra_environment" {
  description = "Further non-secret edge settings by variable name (for example CODEX_METADATA_QUEUE). They cannot replace the ones this module sets."
  type        = map(string)
  default     = {}
}

variable "kms_endpoint_url" {
  description = "KMS endpoint override (AWS_ENDPOINT_URL_KMS), for a KMS interface endpoint without private DNS. Empty: the regional endpoint."
  type        = string
  default     = ""

  validation {
    condition     = var.kms_endpoint_url == "" || can(regex("^https://", var.kms_endpoint_url))
    error_message = "kms_endpoint_url must be an https:// URL."
  }
}

variable "org_kms_key_arns" {
  description = "Per-org master keys in the customers' own AWS accounts (cloud mode, DESIGN §11): org id → KMS key ARN, the key given to `codex-edge orgs create NAME --kek awskms:<arn>`. The task role may use each key only with the encryption context org_id = that org (the edge probes an org's key under that org's id too)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for org, arn in var.org_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", arn)) && can(regex("^[A-Za-z0-9_-]+$", org))])
    error_message = "org_kms_key_arns maps org ids (letters, digits, '_', '-') to KMS key ARNs (arn:aws:kms:<region>:<account>:key/<id>; not aliases: a key policy condition names the key)."
  }
}

variable "controlplane_pins" {
  description = "CODEX_CONTROLPLANE_PINS: base64 SHA-256 digests of the control plane's TLS public keys (current and backup, comma-separated), used only while share_metrics is true. Empty: the CAs alone decide."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^([A-Za-z0-9+/]{43}=(,[A-Za-z0-9+/]{43}=)*)?$", var.controlplane_pins))
    error_message = "controlplane_pins must be base64 SHA-256 digests (44 characters each), comma-separated."
  }
}

variable "trusted_proxy_cidrs" {
  description = "CODEX_TRUSTED_PROXIES: the networks of the load balancer in front of the edge, whose X-Forwarded-For names the client. Without them every client looks like the load balancer to the auth-failure limiter."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.trusted_proxy_cidrs : can(cidrhost(c, 0)) && !can(regex("/0$", c))])
    error_message = "trusted_proxy_cidrs must hold CIDR blocks narrower than /0."
  }
}
