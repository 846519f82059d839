# winstor-probe: smb-mappings v1
# The node's SMB Global Mappings (Get-SmbGlobalMapping), with the status both
# as the number 5.1 serialises and as its name. Run it in a HostProcess container.
# Parameters: none.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'smb-mappings'

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
