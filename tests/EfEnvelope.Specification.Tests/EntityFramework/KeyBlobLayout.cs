using System.Buffers.Binary;

namespace EfEnvelope.Specification.Tests.EntityFramework;

/// <summary>Where the parts of a stored wrapped-key blob are, read from its bytes as docs/FORMAT.md lays them out.</summary>
public static class KeyBlobLayout
{
    /// <summary>Offset just after the provider-wrapped key: where the header ends (and a mode 1 blob's wrapped data key starts).</summary>
    public static int HeaderEnd(byte[] blob)
    {
        var at = 18;
        at += 1 + blob[at];
        for (var i = 0; i < 3; i++)
        {
            at += 2 + BinaryPrimitives.ReadUInt16BigEndian(blob.AsSpan(at));
        }

        return at;
    }

    /// <summary>Offset of the version 2 trailer (flags, entries, seal): after the wrapped data key in mode 1, after the header in mode 2.</summary>
    public static int TrailerStart(byte[] blob) => HeaderEnd(blob) + (blob[1] == 1 ? 60 : 0);
}
