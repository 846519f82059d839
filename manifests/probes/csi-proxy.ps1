# winstor-probe: csi-proxy v1
# Whether csi-proxy is installed and running on the node: the csiproxy
# service (status and start type as names, not 5.1's enum numbers), the file
# version of its binary (null when the binary carries no version resource) and
# every \\.\pipe\csi-proxy-* pipe. Run it in a HostProcess container.
# Parameters: none.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'csi-proxy'

try {
    $service = $null
    $version = $null
    $svc = Get-Service -Name 'csiproxy' -ErrorAction SilentlyContinue
    if ($null -ne $svc) {
        $wmi = Get-CimInstance -ClassName Win32_Service -Filter "Name='csiproxy'"
        $commandLine = [string]$wmi.PathName
        $binary = $commandLine.Trim()
        if ($binary.StartsWith('"')) {
            $binary = $binary.Substring(1)
            $quote = $binary.IndexOf('"')
            if ($quote -ge 0) {
                $binary = $binary.Substring(0, $quote)
            }
        } else {
            $exe = [regex]::Match($binary, '^(.+?\.exe)(\s|$)', 'IgnoreCase')
            if ($exe.Success) {
                $binary = $exe.Groups[1].Value
            }
        }
        $service = [ordered]@{
            name = [string]$svc.Name
            status = $svc.Status.ToString()
            start_type = $svc.StartType.ToString()
            path = $binary
            command_line = $commandLine
        }
        if ([System.IO.File]::Exists($binary)) {
            $info = [System.Diagnostics.FileVersionInfo]::GetVersionInfo($binary)
            foreach ($candidate in @($info.FileVersion, $info.ProductVersion)) {
                if ($null -eq $version -and -not [string]::IsNullOrEmpty($candidate)) {
                    $version = $candidate.Trim()
                }
            }
        }
    }
    try {
        $all = [System.IO.Directory]::GetFiles('\\.\pipe\')
    } catch {
        # .NET Framework rejects pipe names with characters illegal in paths;
        # let the pipe filesystem filter by pattern instead.
        $all = [System.IO.Directory]::GetFiles('\\.\pipe\', 'csi-proxy-*')
    }
    $pipes = New-Object System.Collections.ArrayList
    foreach ($full in $all) {
        $name = [System.IO.Path]::GetFileName($full)
        if ($name.StartsWith('csi-proxy-', [System.StringComparison]::OrdinalIgnoreCase)) {
            [void]$pipes.Add($name)
        }
    }
    $sorted = [string[]]$pipes.ToArray()
    [Array]::Sort($sorted, [System.StringComparer]::Ordinal)
    $data = [ordered]@{
        service = $service
        version = $version
        pipes = $sorted
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}
