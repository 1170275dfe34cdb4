# Offline tests of the edge module's decision logic: `tofu test` here needs
# no provider and no network.

variables {
  name                 = "codex-prod"
  allowed_client_cidrs = ["10.20.0.0/16"]
  kms_key_arn          = "arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
  secret_arns = {
    database_url = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/database-url-AbCdEf"
    redis_url    = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/redis-url-AbCdEf"
  }
}

run "defaults_awskms_no_sharing" {
  command = plan

  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_KEK"]) == "awskms:${var.kms_key_arn}"
    error_message = "CODEX_KEK must be awskms:<key arn>"
  }
  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_SHARE_METRICS"]) == "false"
    error_message = "metric sharing must be off by default"
  }
  assert {
    condition     = length([for e in output.environment : e if e.name == "CODEX_CONTROLPLANE_URL"]) == 0
    error_message = "no control plane URL while sharing is off"
  }
  assert {
    condition     = length([for k, r in output.security_group_rules : k if r.port == 4222]) == 0
    error_message = "no egress to the control plane while sharing is off"
  }
  assert {
    condition = alltrue([for n in [
      "CODEX_LISTEN", "CODEX_ADMIN_LISTEN", "CODEX_DATA_DIR", "CODEX_DATABASE_APP_ROLE", "CODEX_TLS_CERT", "CODEX_TLS_KEY",
      "CODEX_KEK", "CODEX_UPSTREAM_CONNECT_TIMEOUT", "CODEX_UPSTREAM_HEADER_TIMEOUT", "CODEX_UPSTREAM_IDLE_TIMEOUT",
      "CODEX_MAX_BODY_BYTES", "CODEX_TELEMETRY_WINDOW",
    ] : contains(output.environment[*].name, n)])
    error_message = "the environment must carry the DESIGN §8 variables"
  }
  assert {
    condition     = output.secrets[*].name == ["CODEX_DATABASE_URL", "CODEX_REDIS_URL"]
    error_message = "with awskms the secrets are the database and Redis URLs only"
  }
  assert {
    condition     = length(setintersection(output.environment[*].name, output.secrets[*].name)) == 0
    error_message = "a variable is either plain or a secret, never both"
  }
  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_LISTEN"]) == "0.0.0.0:8443"
    error_message = "the edge listens on all interfaces of the task, on the container port"
  }
  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_ADMIN_LISTEN"]) == "127.0.0.1:8081"
    error_message = "the admin listener stays on loopback"
  }
  assert {
    condition     = output.names.load_balancer == "codex-prod-lb" && length(output.names.target_group) <= 32 && length(output.names.redis) <= 40
    error_message = "names must fit AWS limits"
  }
  assert {
    condition     = output.secret_arns == sort([for v in values(var.secret_arns) : v if v != ""])
    error_message = "the execution role reads exactly the referenced secrets"
  }
}

run "no_ingress_from_anywhere" {
  command = plan

  variables {
    allowed_client_cidrs              = ["10.20.0.0/16", "192.168.10.0/24"]
    allowed_client_security_group_ids = ["sg-0123456789abcdef0"]
  }

  assert {
    condition     = alltrue([for r in values(output.security_group_rules) : r.direction != "ingress" || (r.cidr == null ? true : !can(regex("/0$", r.cidr)))])
    error_message = "no ingress rule may come from a /0 block"
  }
  assert {
    condition     = length([for r in values(output.security_group_rules) : r if r.security_group == "load_balancer" && r.direction == "ingress"]) == 3
    error_message = "one listener ingress rule per client CIDR and security group"
  }
  assert {
    condition     = one([for r in values(output.security_group_rules) : r.peer if r.security_group == "edge" && r.direction == "ingress"]) == "load_balancer"
    error_message = "the edge tasks accept connections from the load balancer only"
  }
  assert {
    condition     = output.security_group_rules["database-in-edge"].peer == "edge" && output.security_group_rules["redis-in-edge"].peer == "edge"
    error_message = "the created Postgres and Redis accept the edge only"
  }
}

run "refuses_open_client_cidr" {
  command = plan

  variables {
    allowed_client_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.allowed_client_cidrs]
}

run "refuses_open_ipv6_client_cidr" {
  command = plan

  variables {
    allowed_client_cidrs = ["::/0"]
  }

  expect_failures = [var.allowed_client_cidrs]
}

run "refuses_no_clients" {
  command = plan

  variables {
    allowed_client_cidrs = []
  }

  expect_failures = [output.environment]
}

run "existing_stores" {
  command = plan

  variables {
    database_security_group = "sg-0aaaaaaaaaaaaaaa1"
    redis_security_group    = "sg-0bbbbbbbbbbbbbbb2"
  }

  assert {
    condition     = output.security_group_rules["edge-out-database"].peer == "sg-0aaaaaaaaaaaaaaa1" && output.security_group_rules["edge-out-redis"].peer == "sg-0bbbbbbbbbbbbbbb2"
    error_message = "the edge reaches the existing stores' groups"
  }
  assert {
    condition     = !contains(keys(output.security_group_rules), "database-in-edge") && !contains(keys(output.security_group_rules), "redis-in-edge")
    error_message = "the module does not change groups it does not own"
  }
}

run "byok_from_secrets_manager" {
  command = plan

  variables {
    kek         = "byok"
    kms_key_arn = ""
    secret_arns = {
      database_url       = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/database-url-AbCdEf"
      redis_url          = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/redis-url-AbCdEf"
      byok_key           = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/byok-AbCdEf:current::"
      byok_previous_keys = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/byok-AbCdEf:previous::"
    }
  }

  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_KEK"]) == "byok"
    error_message = "CODEX_KEK must be byok"
  }
  assert {
    condition     = contains(output.secrets[*].name, "CODEX_BYOK_KEY") && contains(output.secrets[*].name, "CODEX_BYOK_PREVIOUS_KEYS")
    error_message = "the BYOK key and its previous versions come from Secrets Manager"
  }
  assert {
    condition     = contains(output.secret_arns, "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/byok-AbCdEf") && length(output.secret_arns) == 3
    error_message = "JSON-key references collapse to one secret ARN for IAM"
  }
  assert {
    condition     = !contains(output.environment[*].name, "CODEX_BYOK_KEY")
    error_message = "the BYOK key is never a plain environment value"
  }
}

run "byok_needs_its_secret" {
  command = plan

  variables {
    kek = "byok"
  }

  expect_failures = [output.environment]
}

run "awskms_needs_a_key_arn" {
  command = plan

  variables {
    kms_key_arn = "not-an-arn"
  }

  expect_failures = [output.environment]
}

run "sharing_on" {
  command = plan

  variables {
    share_metrics           = true
    controlplane_url        = "https://codex.example.com"
    controlplane_nats_cidrs = ["203.0.113.0/24"]
    secret_arns = {
      database_url     = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/database-url-AbCdEf"
      redis_url        = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/redis-url-AbCdEf"
      enrollment_token = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/enrollment-AbCdEf"
    }
  }

  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_SHARE_METRICS"]) == "true"
    error_message = "sharing on"
  }
  assert {
    condition     = contains(output.secrets[*].name, "CODEX_ENROLLMENT_TOKEN") && !contains(output.environment[*].name, "CODEX_ENROLLMENT_TOKEN")
    error_message = "the enrollment token is a secret reference"
  }
  assert {
    condition     = output.security_group_rules["edge-out-nats-203.0.113.0/24"].port == 4222 && output.security_group_rules["edge-out-nats-203.0.113.0/24"].direction == "egress"
    error_message = "egress to the control plane's NATS while sharing is on"
  }
}

run "sharing_needs_its_settings" {
  command = plan

  variables {
    share_metrics = true
  }

  expect_failures = [output.environment]
}

run "provider_keys_and_extra_environment" {
  command = plan

  variables {
    provider_api_key_secrets = { OPENAI_API_KEY = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/openai-AbCdEf" }
    extra_environment        = { CODEX_METADATA_QUEUE = "131072" }
    kms_endpoint_url         = "https://vpce-0123.kms.eu-west-1.vpce.amazonaws.com"
  }

  assert {
    condition     = contains(output.secrets[*].name, "OPENAI_API_KEY")
    error_message = "provider keys are secrets"
  }
  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_METADATA_QUEUE"]) == "131072"
    error_message = "extra settings pass through"
  }
  assert {
    condition     = one([for e in output.environment : e.value if e.name == "AWS_ENDPOINT_URL_KMS"]) == var.kms_endpoint_url
    error_message = "the KMS endpoint override is passed on"
  }
}

run "extra_environment_cannot_override" {
  command = plan

  variables {
    extra_environment = { CODEX_KEK = "local" }
  }

  expect_failures = [output.environment]
}

run "provider_key_names_are_not_codex_settings" {
  command = plan

  variables {
    provider_api_key_secrets = { CODEX_KEK = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:x-AbCdEf" }
  }

  expect_failures = [var.provider_api_key_secrets]
}

run "name_is_validated" {
  command = plan

  variables {
    name = "Codex_Prod"
  }

  expect_failures = [var.name]
}

run "org_kms_keys" {
  command = plan

  variables {
    org_kms_key_arns = {
      org_acme   = "arn:aws:kms:eu-west-1:444455556666:key/11112222-3333-4444-5555-666677778888"
      org_globex = "arn:aws:kms:us-east-1:777788889999:key/aaaabbbb-cccc-dddd-eeee-ffff00001111"
    }
  }

  assert {
    condition     = output.org_key_grants["org_acme"].key_arn == "arn:aws:kms:eu-west-1:444455556666:key/11112222-3333-4444-5555-666677778888"
    error_message = "each org's grant names its own key"
  }
  assert {
    condition     = output.org_key_grants["org_acme"].context_ids == ["org_acme"] && output.org_key_grants["org_globex"].context_ids == ["org_globex"]
    error_message = "a key is usable for its own org's context only"
  }
  assert {
    condition     = output.org_key_grants["org_acme"].sid != output.org_key_grants["org_globex"].sid && can(regex("^[A-Za-z0-9]+$", output.org_key_grants["org_acme"].sid))
    error_message = "statement ids are distinct and alphanumeric"
  }
  assert {
    condition     = !contains(output.org_key_grants["org_acme"].actions, "kms:ScheduleKeyDeletion")
    error_message = "use of a customer key never includes its deletion"
  }
}

run "org_kms_key_alias_refused" {
  command = plan

  variables {
    org_kms_key_arns = { org_acme = "arn:aws:kms:eu-west-1:444455556666:alias/acme" }
  }
  expect_failures = [var.org_kms_key_arns]
}

run "trusted_proxies_and_pins" {
  command = plan

  variables {
    share_metrics           = true
    controlplane_url        = "https://codex.example.com"
    controlplane_pins       = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=,jb1Z5gWHyWs7D8cv0Yg8a5e7rQ3E3a2zqZx3o2Tq0Uo="
    controlplane_nats_cidrs = ["203.0.113.0/24"]
    trusted_proxy_cidrs     = ["10.0.1.0/24", "10.0.2.0/24"]
    secret_arns = {
      database_url     = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/database-url-AbCdEf"
      redis_url        = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/redis-url-AbCdEf"
      enrollment_token = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:codex-prod/enrollment-AbCdEf"
    }
  }

  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_TRUSTED_PROXIES"]) == "10.0.1.0/24,10.0.2.0/24"
    error_message = "the load balancer's subnets are the trusted proxies"
  }
  assert {
    condition     = one([for e in output.environment : e.value if e.name == "CODEX_CONTROLPLANE_PINS"]) == var.controlplane_pins
    error_message = "the control plane's pins reach the edge"
  }
}

run "refuses_open_trusted_proxies" {
  command = plan

  variables {
    trusted_proxy_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.trusted_proxy_cidrs]
}
