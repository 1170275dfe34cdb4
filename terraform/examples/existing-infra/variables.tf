variable "region" {
  description = "AWS region of the existing VPC."
  type        = string
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Existing private subnets (two or more availability zones) with a route to the AI providers (NAT gateway or egress proxy)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups of the services that call the edge."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate for the edge's name."
  type        = string
}

variable "image" {
  description = "The codex-edge image, pinned by digest or version tag."
  type        = string
}

variable "database_url_secret_arn" {
  description = "Secret holding the application role's URL of the existing Postgres (postgres://codex_app:...@host:5432/codex?sslmode=verify-full)."
  type        = string
}

variable "database_owner_url_secret_arn" {
  description = "Secret holding the owner role's URL of the existing Postgres, for migrations."
  type        = string
}

variable "database_security_group_id" {
  description = "Security group of the existing Postgres."
  type        = string
}

variable "redis_url_secret_arn" {
  description = "Secret holding the existing Redis URL with its auth token (rediss://:token@host:6379/0)."
  type        = string
}

variable "redis_security_group_id" {
  description = "Security group of the existing Redis."
  type        = string
}

variable "byok_key_secret_arn" {
  description = "Secret holding the customer's own 256-bit master key (BYOK) instead of a KMS key."
  type        = string
}

variable "openai_api_key_secret_arn" {
  description = "Secret holding the OpenAI API key (OPENAI_API_KEY)."
  type        = string
}
