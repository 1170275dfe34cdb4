# RDS for PostgreSQL: encrypted, private, TLS required, IAM authentication
# available. The master user (codex_owner) runs migrations only; the edge
# serves as database_app_role, which owns no table (row-level security).

resource "aws_db_subnet_group" "this" {
  count      = var.create_database ? 1 : 0
  name       = local.names.database_subnets
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "aws_db_parameter_group" "this" {
  count  = var.create_database ? 1 : 0
  name   = local.names.database
  family = "postgres${var.database_engine_version}"
  tags   = local.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
}

resource "aws_db_instance" "this" {
  count = var.create_database ? 1 : 0

  identifier     = local.names.database
  engine         = "postgres"
  engine_version = var.database_engine_version
  instance_class = var.database_instance_class
  db_name        = "codex"
  port           = var.database_port
  username       = "codex_owner"
  password       = random_password.database_owner[0].result

  allocated_storage     = var.database_allocated_storage
  max_allocated_storage = var.database_allocated_storage * 4
  storage_type          = "gp3"
  storage_encrypted     = true

  db_subnet_group_name                = aws_db_subnet_group.this[0].name
  parameter_group_name                = aws_db_parameter_group.this[0].name
  vpc_security_group_ids              = [aws_security_group.database[0].id]
  publicly_accessible                 = false
  multi_az                            = var.database_multi_az
  iam_database_authentication_enabled = true

  backup_retention_period    = var.database_backup_retention_days
  deletion_protection        = var.deletion_protection
  skip_final_snapshot        = false
  final_snapshot_identifier  = "${local.names.database}-final"
  copy_tags_to_snapshot      = true
  auto_minor_version_upgrade = true
  tags                       = local.tags
}
