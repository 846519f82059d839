# winstor-probe: volume-info v1
# The volume a path lives on, as the Storage module reports it: its file system
# and size (Get-Volume), its partition (Get-Partition) and the disk under it
# (Get-Disk, null where the container cannot see disks). A grown EBS volume
# shows the bigger disk at once, and a bigger partition and volume only once
# csi-proxy's ResizeVolume has run. Parameters: path.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'volume-info'

try {
    $path = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($path)) {
        throw "parameter 'path' is required"
    }
    $volume = Get-Volume -FilePath $path
    $partition = Get-Partition -Volume $volume
    $diskBytes = $null
    try {
        $diskBytes = [int64](Get-Disk -Partition $partition).Size
    } catch {
        $diskBytes = $null
    }
    $data = [ordered]@{
        path = $path
        file_system = [string]$volume.FileSystem
        size_bytes = [int64]$volume.Size
        size_remaining_bytes = [int64]$volume.SizeRemaining
        partition_bytes = [int64]$partition.Size
        disk_bytes = $diskBytes
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}
