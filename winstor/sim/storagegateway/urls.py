"""What moto's server routes to the Storage Gateway handler."""

from .responses import StorageGatewayResponse

url_bases = [r"https?://storagegateway\.(.+)\.amazonaws\.com"]

url_paths = {"{0}/$": StorageGatewayResponse.dispatch}
