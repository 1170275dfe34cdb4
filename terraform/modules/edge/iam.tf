# Two roles, each with only what it needs:
#  - execution role: ECS pulls the image, writes logs, reads the secrets
#    that become the containers' environment;
#  - task role: what the edge itself calls, which is KMS on its own key and
#    nothing else (it reads no secret at run time).

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = local.names.execution_role
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role" "task" {
  name               = local.names.task_role
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

locals {
  # An image in ECR needs pull rights on its repository only.
  ecr_match          = try(regex("^(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com/(?P<repo>[^:@]+)", var.image), null)
  ecr_repository_arn = local.ecr_match != null ? "arn:${local.partition}:ecr:${local.ecr_match.region}:${local.ecr_match.account}:repository/${local.ecr_match.repo}" : ""

  execution_secret_arns = distinct(concat(
    module.plan.secret_arns,
    [local.tls_secret_arn],
    var.create_database ? [aws_secretsmanager_secret.database_owner_url[0].arn] : [],
    var.database_owner_url_secret_arn != "" ? [var.database_owner_url_secret_arn] : [],
  ))
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.edge.arn}:*"]
  }

  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.execution_secret_arns
  }

  dynamic "statement" {
    for_each = length(var.secrets_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "SecretsKeys"
      actions   = ["kms:Decrypt"]
      resources = var.secrets_kms_key_arns
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.ecr_repository_arn != "" ? [1] : []
    content {
      sid       = "PullImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [local.ecr_repository_arn]
    }
  }

  dynamic "statement" {
    for_each = local.ecr_repository_arn != "" ? [1] : []
    content {
      sid       = "EcrToken"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"] # this action has no resource-level permissions
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "codex-edge-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

data "aws_iam_policy_document" "task" {
  count = var.kek == "awskms" ? 1 : 0

  statement {
    sid       = "MasterKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:DescribeKey"]
    resources = [aws_kms_key.kek[0].arn]
  }
}

resource "aws_iam_role_policy" "task" {
  count  = var.kek == "awskms" ? 1 : 0
  name   = "codex-edge-master-key"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task[0].json
}

# Cloud mode: each org's own master key lives in the customer's account.
# Cross-account use needs both this policy and the customer's key policy
# (README). Each key is usable only for its own org's encryption context
# (the edge probes an org's key under the id of an org that uses it), so a
# key granted for one org cannot unwrap another org's data keys through
# this role.
data "aws_iam_policy_document" "org_keys" {
  count = length(var.org_kms_key_arns) > 0 ? 1 : 0

  dynamic "statement" {
    for_each = module.plan.org_key_grants
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = [statement.value.key_arn]
      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:org_id"
        values   = statement.value.context_ids
      }
    }
  }

  # DescribeKey resolves the key; ScheduleKeyDeletion is `crypto shred
  # --schedule-key-deletion`, which the customer's key policy may or may
  # not grant. Neither carries an encryption context.
  statement {
    sid       = "OrgKeysDescribeAndShred"
    actions   = ["kms:DescribeKey", "kms:ScheduleKeyDeletion"]
    resources = values(var.org_kms_key_arns)
  }
}

resource "aws_iam_role_policy" "org_keys" {
  count  = length(var.org_kms_key_arns) > 0 ? 1 : 0
  name   = "codex-edge-org-master-keys"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.org_keys[0].json
}
