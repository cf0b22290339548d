namespace EfEnvelope.Pkcs11.Internal;

/// <summary>Sees each token operation start and end on its session (tests count concurrent use per session).</summary>
internal interface ISessionObserver
{
    void OperationStarting(ulong sessionId);

    void OperationEnded(ulong sessionId);
}
