# A complete lorafleet cluster: network, three NATS nodes (also the gossip seeds), routers
# behind a Network Load Balancer and GPU workers, with the gossip key in SSM Parameter Store.

module "network" {
  source = "../../modules/network"
  name   = var.name
  azs    = var.azs
}

resource "random_id" "gossip_key" {
  byte_length = 32
}

resource "aws_ssm_parameter" "gossip_key" {
  name  = "/${var.name}/gossip-key"
  type  = "SecureString"
  value = random_id.gossip_key.b64_std
}

module "nats" {
  source                  = "../../modules/nats"
  name                    = var.name
  vpc_id                  = module.network.vpc_id
  subnet_ids              = module.network.private_subnet_ids
  private_ips             = [for i in range(3) : cidrhost("10.40.${100 + i % length(var.azs)}.0/24", 10 + i)]
  fleet_security_group_id = module.network.fleet_security_group_id
  ami_id                  = var.ami_id
  lorafleet_binary_url    = var.lorafleet_binary_url
  instance_profile_name   = aws_iam_instance_profile.router.name # the same reads as a router
  gossip_key_parameter    = aws_ssm_parameter.gossip_key.name
}

data "aws_iam_policy_document" "router_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "router_read" {
  statement {
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.gossip_key.arn]
  }
  dynamic "statement" {
    for_each = var.artifacts_s3_arn == null ? [] : [var.artifacts_s3_arn]
    content {
      actions   = ["s3:GetObject"]
      resources = ["${statement.value}/*"]
    }
  }
}

resource "aws_iam_role" "router" {
  name_prefix        = "${var.name}-router-"
  assume_role_policy = data.aws_iam_policy_document.router_assume.json
}

resource "aws_iam_role_policy" "router" {
  role   = aws_iam_role.router.id
  policy = data.aws_iam_policy_document.router_read.json
}

resource "aws_iam_instance_profile" "router" {
  name_prefix = "${var.name}-router-"
  role        = aws_iam_role.router.name
}

module "router" {
  source                  = "../../modules/router"
  name                    = var.name
  vpc_id                  = module.network.vpc_id
  private_subnet_ids      = module.network.private_subnet_ids
  public_subnet_ids       = module.network.public_subnet_ids
  allowed_cidrs           = var.allowed_cidrs
  fleet_security_group_id = module.network.fleet_security_group_id
  ami_id                  = var.ami_id
  lorafleet_binary_url    = var.lorafleet_binary_url
  gossip_seeds            = module.nats.gossip_seeds
  nats_urls               = module.nats.urls
  gossip_key_parameter    = aws_ssm_parameter.gossip_key.name
  instance_profile_name   = aws_iam_instance_profile.router.name
}

module "worker" {
  source                   = "../../modules/worker"
  name                     = var.name
  vpc_id                   = module.network.vpc_id
  private_subnet_ids       = module.network.private_subnet_ids
  fleet_security_group_id  = module.network.fleet_security_group_id
  router_security_group_id = module.router.security_group_id
  gpu                      = var.gpu
  ami_id                   = var.gpu_ami_id
  min_size                 = var.workers
  max_size                 = var.workers * 2
  lorafleet_binary_url     = var.lorafleet_binary_url
  model_s3_uri             = var.model_s3_uri
  binary_s3_arn            = var.artifacts_s3_arn
  gossip_seeds             = module.nats.gossip_seeds
  nats_urls                = module.nats.urls
  gossip_key_parameter     = aws_ssm_parameter.gossip_key.name
  gossip_key_parameter_arn = aws_ssm_parameter.gossip_key.arn
}
