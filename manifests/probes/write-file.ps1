# winstor-probe: write-file v1
# Writes text to a file (UTF-8 without BOM, replacing it) in an existing
# directory and reads the bytes back, reporting both checksums.
# Parameters: path (file), content (text).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'write-file'

try {
    $path = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($path)) {
        throw "parameter 'path' is required"
    }
    $content = [string]$WinstorParams.content
    $utf8 = New-Object System.Text.UTF8Encoding -ArgumentList $false
    $bytes = $utf8.GetBytes($content)
    [System.IO.File]::WriteAllText($path, $content, $utf8)
    $back = [System.IO.File]::ReadAllBytes($path)
    $data = [ordered]@{
        path = $path
        bytes = $bytes.Length
        sha256 = (Get-Sha256Hex -Bytes $bytes)
        read_back_sha256 = (Get-Sha256Hex -Bytes $back)
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}
