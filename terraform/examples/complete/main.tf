# A complete deployment: a new VPC with private subnets and a NAT gateway
# (the edge's only way out, to the AI providers and AWS APIs), and the edge
# module creating everything else: KMS key, RDS, ElastiCache, ECS service
# and internal load balancer.

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, 2)
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "codex-example" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  tags              = { Name = "codex-example-private-${count.index}" }
}

resource "aws_subnet" "public" {
  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[0]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 255)
  tags              = { Name = "codex-example-public" }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_eip" "nat" {
  domain = "vpc"
}

resource "aws_nat_gateway" "this" {
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.public.id
  depends_on    = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this.id
  }
}

resource "aws_route_table_association" "private" {
  count          = 2
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

module "edge" {
  source = "../../modules/edge"

  name                 = "codex-example"
  vpc_id               = aws_vpc.this.id
  private_subnet_ids   = aws_subnet.private[*].id
  allowed_client_cidrs = var.client_cidrs
  certificate_arn      = var.certificate_arn
  image                = var.image

  provider_api_key_secrets = {
    OPENAI_API_KEY    = var.openai_api_key_secret_arn
    ANTHROPIC_API_KEY = var.anthropic_api_key_secret_arn
  }

  share_metrics               = var.share_metrics
  controlplane_url            = var.share_metrics ? "https://app.persiv.example" : ""
  controlplane_nats_cidrs     = var.share_metrics ? ["203.0.113.0/24"] : []
  enrollment_token_secret_arn = var.enrollment_token_secret_arn

  # Cloud mode: orgs whose data keys are wrapped by a KMS key in their own
  # AWS account (each customer adds the key policy of the module README).
  org_kms_key_arns = var.org_kms_key_arns

  # An example you can destroy.
  deletion_protection = false
  database_multi_az   = false

  tags = { Project = "codex-example" }
}
