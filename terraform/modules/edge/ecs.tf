# The edge as an ECS Fargate service (see README.md for why Fargate).

resource "aws_cloudwatch_log_group" "edge" {
  name              = local.names.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn != "" ? var.log_kms_key_arn : null
  tags              = local.tags
}

resource "aws_ecs_cluster" "this" {
  count = var.ecs_cluster_arn == "" ? 1 : 0
  name  = local.names.cluster
  tags  = local.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

locals {
  cluster_arn = var.ecs_cluster_arn != "" ? var.ecs_cluster_arn : aws_ecs_cluster.this[0].arn
  uid         = "65532" # the nonroot user of the distroless image

  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.edge.name
      awslogs-region        = local.region
      awslogs-stream-prefix = "edge"
    }
  }

  # The edge image has no shell, and ECS cannot mount a secret as a file:
  # this one-shot container writes the TLS files from the secret into a
  # task-local volume and hands the data volume to the edge's user. It runs
  # as root only for chown, with a read-only root filesystem.
  tls_init_container = {
    name                   = local.names.tls_init_container
    image                  = var.tls_init_image
    essential              = false
    readonlyRootFilesystem = true
    user                   = "0"
    entryPoint             = ["sh", "-c"]
    command = [join(" && ", [
      "umask 077",
      "printf '%s' \"$TLS_CERT_PEM\" > ${local.names.tls_cert_file}",
      "printf '%s' \"$TLS_KEY_PEM\" > ${local.names.tls_key_file}",
      "chown -R ${local.uid}:${local.uid} ${dirname(local.names.tls_cert_file)} /var/lib/codex",
    ])]
    secrets = [
      { name = "TLS_CERT_PEM", valueFrom = "${local.tls_secret_arn}:cert::" },
      { name = "TLS_KEY_PEM", valueFrom = "${local.tls_secret_arn}:key::" },
    ]
    mountPoints = [
      { sourceVolume = local.names.tls_volume, containerPath = dirname(local.names.tls_cert_file), readOnly = false },
      { sourceVolume = local.names.data_volume, containerPath = "/var/lib/codex", readOnly = false },
    ]
    logConfiguration = local.log_configuration
  }

  edge_container = {
    name                   = local.names.edge_container
    image                  = var.image
    essential              = true
    user                   = "${local.uid}:${local.uid}"
    readonlyRootFilesystem = true
    command                = ["serve"]
    environment            = module.plan.environment
    secrets                = module.plan.secrets
    portMappings           = [{ containerPort = local.container_port, protocol = "tcp" }]
    mountPoints = [
      { sourceVolume = local.names.tls_volume, containerPath = dirname(local.names.tls_cert_file), readOnly = true },
      { sourceVolume = local.names.data_volume, containerPath = "/var/lib/codex", readOnly = false },
    ]
    dependsOn = [{ containerName = local.names.tls_init_container, condition = "SUCCESS" }]
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    ulimits = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    # The image's own probe (no shell or curl in a distroless image).
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/codex-healthcheck", "https://127.0.0.1:${local.container_port}/healthz"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 20
    }
    stopTimeout      = 60
    logConfiguration = local.log_configuration
  }
}

resource "aws_ecs_task_definition" "edge" {
  family                   = local.names.task_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.tls_init_container, local.edge_container])
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = local.names.tls_volume
  }

  volume {
    name = local.names.data_volume
  }
}

# One-off: `codex-edge migrate` as the owner role. Run it with
# `aws ecs run-task` after apply and after each upgrade (INSTALL.md).
resource "aws_ecs_task_definition" "migrate" {
  count = var.create_database || var.database_owner_url_secret_arn != "" ? 1 : 0

  family                   = local.names.migrate_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  tags                     = local.tags

  container_definitions = jsonencode([{
    name                   = "migrate"
    image                  = var.image
    essential              = true
    user                   = "${local.uid}:${local.uid}"
    readonlyRootFilesystem = true
    command                = ["migrate"]
    environment = [
      { name = "CODEX_DATA_DIR", value = "/tmp" },
      { name = "CODEX_DATABASE_APP_ROLE", value = var.database_app_role },
      { name = "CODEX_LOG_LEVEL", value = var.log_level },
    ]
    secrets = [{
      name      = "CODEX_DATABASE_URL"
      valueFrom = var.create_database ? aws_secretsmanager_secret.database_owner_url[0].arn : var.database_owner_url_secret_arn
    }]
    linuxParameters  = { capabilities = { drop = ["ALL"] } }
    logConfiguration = local.log_configuration
  }])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

# One-off, with create_database only: creates (or re-passwords) the
# application role the edge serves as, which owns nothing and cannot bypass
# row-level security, and lets it connect. Idempotent; run it before the
# first migrate (INSTALL.md).
resource "aws_ecs_task_definition" "bootstrap" {
  count = var.create_database ? 1 : 0

  family                   = "${var.name}-bootstrap"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  tags                     = local.tags

  container_definitions = jsonencode([{
    name                   = "bootstrap"
    image                  = var.psql_image
    essential              = true
    user                   = "70:70" # postgres in the alpine image
    readonlyRootFilesystem = true
    entryPoint             = ["sh", "-c"]
    command = [join("\n", [
      "psql \"$OWNER_URL\" -v ON_ERROR_STOP=1 -v role=\"$APP_ROLE\" -v pw=\"$APP_PASSWORD\" <<'SQL'",
      "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE', :'role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \\gexec",
      "SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD %L', :'role', :'pw') \\gexec",
      "SELECT format('GRANT CONNECT ON DATABASE codex TO %I', :'role') \\gexec",
      "SQL",
    ])]
    environment = [{ name = "APP_ROLE", value = var.database_app_role }]
    secrets = [
      { name = "OWNER_URL", valueFrom = aws_secretsmanager_secret.database_owner_url[0].arn },
      { name = "APP_PASSWORD", valueFrom = "${aws_secretsmanager_secret.database_url[0].arn}:password::" },
    ]
    linuxParameters  = { capabilities = { drop = ["ALL"] } }
    logConfiguration = local.log_configuration
  }])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

resource "aws_ecs_service" "edge" {
  name                   = local.names.service
  cluster                = local.cluster_arn
  task_definition        = aws_ecs_task_definition.edge.arn
  desired_count          = var.desired_count
  launch_type            = "FARGATE"
  platform_version       = "LATEST"
  enable_execute_command = false
  propagate_tags         = "SERVICE"
  wait_for_steady_state  = false
  tags                   = local.tags

  health_check_grace_period_seconds  = 30
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.edge.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.edge.arn
    container_name   = local.names.edge_container
    container_port   = local.container_port
  }

  lifecycle {
    ignore_changes = [desired_count] # owned by auto scaling
  }

  depends_on = [aws_lb_listener.https, aws_iam_role_policy.execution]
}

resource "aws_appautoscaling_target" "edge" {
  service_namespace  = "ecs"
  resource_id        = "service/${element(split("/", local.cluster_arn), 1)}/${aws_ecs_service.edge.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
  tags               = local.tags
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.edge.service_namespace
  resource_id        = aws_appautoscaling_target.edge.resource_id
  scalable_dimension = aws_appautoscaling_target.edge.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
