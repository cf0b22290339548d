namespace EfEnvelope.Cli;

/// <summary>The process exit codes (docs/cli.md lists them for scripts).</summary>
internal static class ExitCodes
{
    /// <summary>Done: every row processed (or, for inventory with --retiring-key, nothing needs the key).</summary>
    public const int Success = 0;

    /// <summary>The job ran to the end but some rows failed (or the retiring key is still needed).</summary>
    public const int RowsFailed = 1;

    /// <summary>Wrong arguments, no context found, or a configuration that cannot work (including a master-key configuration error).</summary>
    public const int UsageOrConfiguration = 2;

    /// <summary>The master-key provider was unreachable, timed out or failed.</summary>
    public const int ProviderUnavailable = 3;

    /// <summary>Access to a master key was revoked.</summary>
    public const int KeyRevoked = 4;

    /// <summary>Interrupted (Ctrl+C or SIGTERM) after a committed batch; the checkpoint file lets the same command resume.</summary>
    public const int Interrupted = 130;
}
