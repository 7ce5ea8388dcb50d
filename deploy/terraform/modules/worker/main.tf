# GPU workers: an autoscaling group whose launch template's cloud-init installs the lorafleet
# CUDA binary, syncs the model and the adapters from S3, reads the gossip key from SSM and
# starts the systemd unit from deploy/systemd. Changing the binary URL or the template starts
# a rolling instance refresh; each worker drains on SIGTERM.

locals {
  default_instance_type = { l4 = "g6.xlarge", a10g = "g5.xlarge", h100 = "p5.48xlarge" }
  instance_type         = coalesce(var.instance_type, local.default_instance_type[var.gpu])
}

resource "aws_s3_bucket" "adapters" {
  bucket_prefix = "${var.name}-adapters-"
}

resource "aws_s3_bucket_public_access_block" "adapters" {
  bucket                  = aws_s3_bucket.adapters.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "read" {
  statement {
    sid       = "Adapters"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = [aws_s3_bucket.adapters.arn, "${aws_s3_bucket.adapters.arn}/*"]
  }
  statement {
    sid       = "GossipKey"
    actions   = ["ssm:GetParameter"]
    resources = [var.gossip_key_parameter_arn]
  }
  dynamic "statement" {
    for_each = var.binary_s3_arn == null ? [] : [var.binary_s3_arn]
    content {
      sid       = "BinaryAndModel"
      actions   = ["s3:GetObject", "s3:ListBucket"]
      resources = [statement.value, "${statement.value}/*"]
    }
  }
}

resource "aws_iam_role" "worker" {
  name_prefix        = "${var.name}-worker-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "read" {
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.read.json
}

resource "aws_iam_instance_profile" "worker" {
  name_prefix = "${var.name}-worker-"
  role        = aws_iam_role.worker.name
}

resource "aws_security_group" "worker" {
  name        = "${var.name}-worker"
  description = "lorafleet workers: HTTP from the routers only"
  vpc_id      = var.vpc_id
}

resource "aws_security_group_rule" "http" {
  type                     = "ingress"
  description              = "worker HTTP from the routers"
  security_group_id        = aws_security_group.worker.id
  source_security_group_id = var.router_security_group_id
  protocol                 = "tcp"
  from_port                = 9000
  to_port                  = 9000
}

resource "aws_launch_template" "worker" {
  name_prefix   = "${var.name}-worker-"
  image_id      = var.ami_id
  instance_type = local.instance_type
  iam_instance_profile {
    name = aws_iam_instance_profile.worker.name
  }
  vpc_security_group_ids = [aws_security_group.worker.id, var.fleet_security_group_id]
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 200
      volume_type = "gp3"
    }
  }
  user_data = base64encode(templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    binary_url           = var.lorafleet_binary_url
    model_s3_uri         = var.model_s3_uri
    model_name           = var.model_name
    adapters_s3_uri      = "s3://${aws_s3_bucket.adapters.bucket}"
    join                 = var.gossip_seeds[0]
    nats_urls            = var.nats_urls
    gossip_key_parameter = var.gossip_key_parameter
    backend              = var.backend
    worker_unit          = indent(6, file("${path.module}/../../../systemd/lorafleet-worker.service"))
  }))
}

resource "aws_autoscaling_group" "worker" {
  name                      = "${var.name}-worker"
  min_size                  = var.min_size
  max_size                  = var.max_size
  vpc_zone_identifier       = var.private_subnet_ids
  health_check_grace_period = 600 # model download and load
  launch_template {
    id      = aws_launch_template.worker.id
    version = aws_launch_template.worker.latest_version
  }
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 75
      instance_warmup        = 600
    }
  }
}
