output "names" {
  description = "Names of the resources the parent module creates, by role."
  value       = local.names
}

output "security_group_rules" {
  description = "Security group rules by key: security_group (load_balancer, edge, database, redis), direction, port, and either cidr or peer (a module group's role or an existing group's id)."
  value       = local.security_group_rules
}

output "environment" {
  description = "The edge container's non-secret environment, as ECS wants it: a list of {name, value} sorted by name."
  value       = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]

  precondition {
    condition     = var.kek != "awskms" || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kek is \"awskms\": kms_key_arn must be a KMS key ARN."
  }
  precondition {
    condition     = var.kek != "byok" || var.secret_arns.byok_key != ""
    error_message = "kek is \"byok\": secret_arns.byok_key must name the Secrets Manager secret holding the key."
  }
  precondition {
    condition     = var.secret_arns.database_url != "" && var.secret_arns.redis_url != ""
    error_message = "secret_arns.database_url and secret_arns.redis_url are required."
  }
  precondition {
    condition     = !var.share_metrics || (var.controlplane_url != "" && var.secret_arns.enrollment_token != "" && length(var.controlplane_nats_cidrs) > 0)
    error_message = "share_metrics is true: set controlplane_url, secret_arns.enrollment_token and controlplane_nats_cidrs."
  }
  precondition {
    condition     = length(setintersection(keys(var.extra_environment), concat(keys(local.module_environment), keys(local.secrets)))) == 0
    error_message = "extra_environment must not set a variable this module sets (or a secret)."
  }
  precondition {
    condition     = length(var.allowed_client_cidrs) + length(var.allowed_client_security_group_ids) > 0
    error_message = "set allowed_client_cidrs or allowed_client_security_group_ids: otherwise no client can reach the edge."
  }
}

output "secrets" {
  description = "The edge container's secrets, as ECS wants them: a list of {name, valueFrom} (Secrets Manager ARNs) sorted by name."
  value       = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]
}

output "secret_arns" {
  description = "Distinct Secrets Manager secret ARNs the task execution role must be allowed to read."
  value       = local.secret_arns
}

output "org_key_grants" {
  description = "What the task role is granted on each customer's per-org KMS key, by org id: key_arn, a statement id, the KMS actions of edge/keyring/awskms, and the org ids the kms:EncryptionContext:org_id condition admits (the org alone: the edge probes an org's key under the id of an org that uses it)."
  value = {
    for org, arn in var.org_kms_key_arns : org => {
      key_arn     = arn
      sid         = "OrgKey${replace(title(replace(org, "/[-_]/", " ")), " ", "")}"
      actions     = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
      context_ids = [org]
    }
  }
}
