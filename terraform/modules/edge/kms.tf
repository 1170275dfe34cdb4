# The master key wrapping every org's data keys (DESIGN §5). Only the edge's
# task role may use it, only with an org_id encryption context (the only
# context key edge/keyring/awskms sends); the
# administrators may manage but not use it. Disabling or deleting it makes
# all content unreadable (crypto-shred) without stopping the edge.

locals {
  kms_admins = length(var.kms_key_administrator_arns) > 0 ? var.kms_key_administrator_arns : ["arn:${local.partition}:iam::${local.account}:root"]
}

data "aws_iam_policy_document" "kek" {
  count = var.kek == "awskms" ? 1 : 0

  statement {
    sid = "Administration"
    principals {
      type        = "AWS"
      identifiers = local.kms_admins
    }
    actions = [
      "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey",
      "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
      "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags", "kms:ListKeyRotations",
      "kms:PutKeyPolicy", "kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:TagResource",
      "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
    ]
    resources = ["*"]
  }

  statement {
    sid = "EdgeTaskUse"
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.task.arn]
    }
    # The calls of edge/keyring/awskms (its API interface); ReEncrypt
    # (rewrap) needs both ReEncrypt permissions.
    actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
    resources = ["*"]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["org_id"]
    }
    condition {
      test     = "Null"
      variable = "kms:EncryptionContextKeys"
      values   = ["false"]
    }
  }

  statement {
    sid = "EdgeTaskDescribe"
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.task.arn]
    }
    actions   = ["kms:DescribeKey"]
    resources = ["*"]
  }
}

resource "aws_kms_key" "kek" {
  count = var.kek == "awskms" ? 1 : 0

  description             = "codex-edge ${var.name}: master key wrapping per-org data keys"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kek[0].json
  tags                    = local.tags
}

resource "aws_kms_alias" "kek" {
  count = var.kek == "awskms" ? 1 : 0

  name          = local.names.kms_alias
  target_key_id = aws_kms_key.kek[0].key_id
}
