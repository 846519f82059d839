# winstor-probe: write-marker v1
# Writes winstor-marker.txt (the marker text, UTF-8 without BOM) and
# winstor-payload.bin (payload_bytes random bytes) into an existing directory and
# reports the payload's SHA-256, so that read-marker, maybe in another pod on
# another node, can prove the same bytes came back.
# Parameters: path (directory), marker (text), payload_bytes (count).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'write-marker'

try {
    $dir = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($dir)) {
        throw "parameter 'path' is required"
    }
    $marker = [string]$WinstorParams.marker
    $count = [int]$WinstorParams.payload_bytes
    if ($count -lt 0) {
        throw "parameter 'payload_bytes' must not be negative"
    }
    $markerPath = [System.IO.Path]::Combine($dir, 'winstor-marker.txt')
    $payloadPath = [System.IO.Path]::Combine($dir, 'winstor-payload.bin')
    $utf8 = New-Object System.Text.UTF8Encoding -ArgumentList $false
    [System.IO.File]::WriteAllText($markerPath, $marker, $utf8)
    $payload = New-Object byte[] $count
    $rng = [System.Security.Cryptography.RandomNumberGenerator]::Create()
    $rng.GetBytes($payload)
    [System.IO.File]::WriteAllBytes($payloadPath, $payload)
    $data = [ordered]@{
        marker_path = $markerPath
        payload_path = $payloadPath
        marker = $marker
        sha256 = (Get-Sha256Hex -Bytes $payload)
        bytes = $payload.Length
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}
