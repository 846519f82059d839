# Sent after the prelude on the kind profile only (see winstor.profiles): the
# Windows cmdlets a Linux stand-in pod lacks, answered from the stand-in node's
# files so that the probes themselves stay byte-identical to the eks ones.
# Functions only.

function Get-SmbGlobalMapping {
    # The SMB Global Mapping stand-in: `winstor kind up` (or the embedded
    # cluster's kind flavour) records the share each node "maps" here.
    $file = '/winstor/smb-global-mappings.json'
    if (-not [System.IO.File]::Exists($file)) {
        return
    }
    $records = [System.IO.File]::ReadAllText($file) | ConvertFrom-Json
    foreach ($record in @($records)) {
        New-Object PSObject -Property ([ordered]@{
            LocalPath = [string]$record.LocalPath
            RemotePath = [string]$record.RemotePath
            Status = $record.Status
        })
    }
}
