"""Running workers on AWS Lambda: the deployment package, its handler, deploy and invoke."""
