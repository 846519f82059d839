# winstor-probe: smb-mappings v1
# The node's SMB Global Mappings (Get-SmbGlobalMapping), with the status both
# as the number 5.1 serialises and as its name. Run it in a HostProcess container.
# Parameters: none.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'smb-mappings'

function Write-ProbeJson {
    param($Object)
    $json = ConvertTo-Json -InputObject $Object -Compress -Depth 10
    # The console code page would mangle non-ASCII text: escape it as JSON \uXXXX.
    $escape = [System.Text.RegularExpressions.MatchEvaluator] {
        param($match)
        '\u{0:x4}' -f [int][char]$match.Value
    }
    [Console]::Out.WriteLine([regex]::Replace($json, '[^\x00-\x7F]', $escape))
}

function Get-ErrorText {
    param($Record)
    $exception = $Record.Exception
    # .NET calls surface as "Exception calling ...": report the real cause.
    while ($exception -is [System.Management.Automation.MethodException] -and $null -ne $exception.InnerException) {
        $exception = $exception.InnerException
    }
    $exception.Message
}

try {
    $names = @('OK', 'Paused', 'Disconnected', 'NetworkError', 'Connecting', 'Reconnecting', 'Unavailable')
    $mappings = New-Object System.Collections.ArrayList
    foreach ($mapping in @(Get-SmbGlobalMapping)) {
        $raw = $mapping.Status
        if ($raw -is [string]) {
            $code = [Array]::IndexOf($names, $raw)
        } else {
            $code = [int]$raw
        }
        $statusName = 'Unknown({0})' -f $code
        if ($code -ge 0 -and $code -lt $names.Length) {
            $statusName = $names[$code]
        }
        [void]$mappings.Add([ordered]@{
            local_path = [string]$mapping.LocalPath
            remote_path = [string]$mapping.RemotePath
            status = $code
            status_name = $statusName
        })
    }
    $data = [ordered]@{
        mappings = $mappings
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}
