using System.Collections.Concurrent;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace EfEnvelope.Pkcs11.Internal;

/// <summary>One logged-in period on a token: the login-holding session, the idle operation sessions and the key handles.</summary>
/// <remarks>
/// <para>
/// PKCS#11 keeps the login per application and drops it when the application's last session on the token closes. So
/// an anchor session that never runs an operation holds the login for the connection's life; operation sessions come
/// and go without logging in again.
/// </para>
/// <para>
/// Keys are checked (<see cref="Pkcs11Token.CheckKey"/>) when first looked up, and their handles are cached per
/// connection and not beyond: a token may renumber objects after a new login (SoftHSM does), so a reconnect starts with
/// no handles.
/// </para>
/// </remarks>
internal sealed class Pkcs11Connection
{
    private readonly Pkcs11Module _module;
    private readonly Pkcs11Configuration _configuration;
    private readonly ISlot _slot;
    private readonly ISession _anchor;
    private readonly ConcurrentBag<ISession> _idle = [];
    private readonly ConcurrentDictionary<string, Pkcs11MasterKey> _keys = new(StringComparer.Ordinal);
    private volatile bool _closed;

    private Pkcs11Connection(Pkcs11Module module, Pkcs11Configuration configuration, ISlot slot, ISession anchor, bool supportsKeyWrap)
    {
        _module = module;
        _configuration = configuration;
        _slot = slot;
        _anchor = anchor;
        SupportsKeyWrap = supportsKeyWrap;
    }

    /// <summary>Whether the token offers <c>CKM_AES_KEY_WRAP</c> for both <c>C_WrapKey</c> and <c>C_UnwrapKey</c>.</summary>
    public bool SupportsKeyWrap { get; }

    /// <summary>Finds the token, opens the anchor session and logs in.</summary>
    public static Pkcs11Connection Open(Pkcs11Module module, Pkcs11Configuration configuration)
    {
        var slot = Pkcs11Token.FindSlot(module, configuration);
        ISession anchor;
        try
        {
            anchor = slot.OpenSession(SessionType.ReadOnly);
        }
        catch (Pkcs11Exception ex)
        {
            throw Pkcs11Token.Unavailable(ex, configuration, "open a session");
        }

        try
        {
            Pkcs11Token.Login(anchor, configuration);
        }
        catch
        {
            CloseQuietly(anchor);
            throw;
        }

        return new Pkcs11Connection(module, configuration, slot, anchor, Pkcs11Token.OffersKeyWrap(slot));
    }

    /// <summary>An idle session, or a new one; the caller has a pool permit, so at most MaxSessions are out.</summary>
    public ISession Rent() => _idle.TryTake(out var session) ? session : _slot.OpenSession(SessionType.ReadOnly);

    /// <summary>Puts a session back for the next operation, or closes it if this connection was dropped meanwhile.</summary>
    public void Return(ISession session)
    {
        if (_closed)
        {
            CloseQuietly(session);
            return;
        }

        _idle.Add(session);

        // Close may have drained the bag between the check above and the Add: drain again so no session leaks.
        if (_closed)
        {
            DrainIdle();
        }
    }

    /// <summary>The key labelled <paramref name="label"/>, looked up and checked once per connection.</summary>
    public Pkcs11MasterKey FindKey(ISession session, string label, string? entity)
    {
        if (_keys.TryGetValue(label, out var cached))
        {
            return cached;
        }

        var found = Pkcs11Token.FindKeys(_module, session, label);
        return found.Count switch
        {
            1 => _keys.GetOrAdd(label, Pkcs11Token.CheckKey(session, found[0], label, _configuration, entity)),
            0 => throw Pkcs11Token.KeyNotFound(label, _configuration, entity),
            _ => throw Pkcs11Token.AmbiguousKey(label, _configuration, entity),
        };
    }

    /// <summary>Whether the key's handle still names an object on the token, asked after an operation failed.</summary>
    /// <remarks>
    /// A token removed or deleted under a running module does not always answer with a handle or session error: SoftHSM
    /// can report <c>CKR_GENERAL_ERROR</c> (its code for a failed authentication tag too) or
    /// <c>CKR_KEY_FUNCTION_NOT_PERMITTED</c> (its attribute read failing) while the object vanishes. Before such an
    /// answer is reported as tampering or revoked access, the key must still be there.
    /// </remarks>
    public bool StillHolds(ISession session, Pkcs11MasterKey key)
    {
        try
        {
            using var read = new AttributeList(session.GetAttributeValue(key.Handle, [CKA.CKA_CLASS]));
            return !read.Items[0].CannotBeRead;
        }
        catch (Pkcs11Exception)
        {
            return false;
        }
    }

    /// <summary>Closes the idle sessions and the anchor; sessions still rented are closed when they come back.</summary>
    public void Close()
    {
        _closed = true;
        DrainIdle();
        CloseQuietly(_anchor);
    }

    private void DrainIdle()
    {
        while (_idle.TryTake(out var session))
        {
            CloseQuietly(session);
        }
    }

    // A session being dropped is usually already invalid on the token's side; failing to close it changes nothing.
    private static void CloseQuietly(ISession session)
    {
        try
        {
            session.CloseSession();
        }
        catch (Pkcs11Exception)
        {
        }
    }
}
