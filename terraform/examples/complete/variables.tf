variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_cidr" {
  description = "CIDR block of the example VPC."
  type        = string
  default     = "10.42.0.0/16"
}

variable "client_cidrs" {
  description = "Networks whose clients may use the edge (here: the VPC itself)."
  type        = list(string)
  default     = ["10.42.0.0/16"]
}

variable "certificate_arn" {
  description = "ACM certificate for the edge's name (for example edge.corp.example.com)."
  type        = string
}

variable "image" {
  description = "The codex-edge image, pinned (for example 111122223333.dkr.ecr.eu-west-1.amazonaws.com/codex-edge:0.1.0)."
  type        = string
}

variable "openai_api_key_secret_arn" {
  description = "Secrets Manager secret holding the OpenAI API key (the edge reads it as OPENAI_API_KEY)."
  type        = string
}

variable "anthropic_api_key_secret_arn" {
  description = "Secrets Manager secret holding the Anthropic API key (the edge reads it as ANTHROPIC_API_KEY)."
  type        = string
}

variable "share_metrics" {
  description = "Share aggregated metrics with the control plane (off unless you switch it on)."
  type        = bool
  default     = false
}

variable "enrollment_token_secret_arn" {
  description = "Secrets Manager secret holding the control plane enrollment token (only with share_metrics)."
  type        = string
  default     = ""
}

variable "org_kms_key_arns" {
  description = "Cloud mode: org id → ARN of that org's KMS key in its customer's account (codex-edge orgs create NAME --kek awskms:<arn>)."
  type        = map(string)
  default     = {}
}
