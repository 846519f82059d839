"""AWS as the checks read it: plain boto3 against whatever endpoint the cluster's settings name."""
