# winstor-probe: read-file v1
# Reads a text file (encoding from its BOM, UTF-8 otherwise). A missing file
# is an answer, not a failure: exists is false.
# Parameters: path (file).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'read-file'

try {
    $path = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($path)) {
        throw "parameter 'path' is required"
    }
    $data = [ordered]@{
        path = $path
        exists = $false
        content = $null
        sha256 = $null
        bytes = $null
    }
    if ([System.IO.File]::Exists($path)) {
        $raw = [System.IO.File]::ReadAllBytes($path)
        $data.exists = $true
        $data.content = [System.IO.File]::ReadAllText($path)
        $data.sha256 = Get-Sha256Hex -Bytes $raw
        $data.bytes = $raw.Length
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}
