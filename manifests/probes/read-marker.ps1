# winstor-probe: read-marker v1
# Reads back what write-marker left in a directory. A missing file is an
# answer, not a failure: *_exists says whether each file is there.
# Parameters: path (directory).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'read-marker'

try {
    $dir = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($dir)) {
        throw "parameter 'path' is required"
    }
    $markerPath = [System.IO.Path]::Combine($dir, 'winstor-marker.txt')
    $payloadPath = [System.IO.Path]::Combine($dir, 'winstor-payload.bin')
    $data = [ordered]@{
        marker_exists = $false
        marker = $null
        payload_exists = $false
        sha256 = $null
        bytes = $null
    }
    if ([System.IO.File]::Exists($markerPath)) {
        $data.marker_exists = $true
        $data.marker = [System.IO.File]::ReadAllText($markerPath)
    }
    if ([System.IO.File]::Exists($payloadPath)) {
        $payload = [System.IO.File]::ReadAllBytes($payloadPath)
        $data.payload_exists = $true
        $data.sha256 = Get-Sha256Hex -Bytes $payload
        $data.bytes = $payload.Length
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}
