# Security groups carry no inline rules; every rule comes from the plan
# module's map, where no ingress rule has a /0 source.

resource "aws_security_group" "load_balancer" {
  name        = local.names.sg_load_balancer
  description = "codex-edge internal load balancer: listed clients in, edge tasks out"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = local.names.sg_load_balancer })
}

resource "aws_security_group" "edge" {
  name        = local.names.sg_edge
  description = "codex-edge tasks: load balancer in; Postgres, Redis, HTTPS (providers, AWS APIs) out"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = local.names.sg_edge })
}

resource "aws_security_group" "database" {
  count       = var.create_database ? 1 : 0
  name        = local.names.sg_database
  description = "codex-edge Postgres: edge tasks in"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = local.names.sg_database })
}

resource "aws_security_group" "redis" {
  count       = var.create_redis ? 1 : 0
  name        = local.names.sg_redis
  description = "codex-edge Redis: edge tasks in"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = local.names.sg_redis })
}

locals {
  security_group_ids = merge(
    { load_balancer = aws_security_group.load_balancer.id, edge = aws_security_group.edge.id },
    var.create_database ? { database = aws_security_group.database[0].id } : {},
    var.create_redis ? { redis = aws_security_group.redis[0].id } : {},
  )
  ingress_rules = { for k, r in module.plan.security_group_rules : k => r if r.direction == "ingress" }
  egress_rules  = { for k, r in module.plan.security_group_rules : k => r if r.direction == "egress" }
}

resource "aws_vpc_security_group_ingress_rule" "this" {
  for_each = local.ingress_rules

  security_group_id            = local.security_group_ids[each.value.security_group]
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  cidr_ipv4                    = each.value.cidr != null && !strcontains(coalesce(each.value.cidr, "-"), ":") ? each.value.cidr : null
  cidr_ipv6                    = each.value.cidr != null && strcontains(coalesce(each.value.cidr, "-"), ":") ? each.value.cidr : null
  referenced_security_group_id = each.value.peer != null ? lookup(local.security_group_ids, each.value.peer, each.value.peer) : null
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "this" {
  for_each = local.egress_rules

  security_group_id            = local.security_group_ids[each.value.security_group]
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  cidr_ipv4                    = each.value.cidr != null && !strcontains(coalesce(each.value.cidr, "-"), ":") ? each.value.cidr : null
  cidr_ipv6                    = each.value.cidr != null && strcontains(coalesce(each.value.cidr, "-"), ":") ? each.value.cidr : null
  referenced_security_group_id = each.value.peer != null ? lookup(local.security_group_ids, each.value.peer, each.value.peer) : null
  tags                         = local.tags
}
