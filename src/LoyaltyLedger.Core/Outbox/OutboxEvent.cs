namespace LoyaltyLedger.Outbox;

/// <summary>
/// One row of the outbox, as readers get it: sequenced (it has a <see cref="Position"/>, given in
/// commit order), with its whole envelope in <see cref="Payload"/>:
/// <c>{"id":"evt_&lt;EventId&gt;","type":...,"createdAt":"...","orgId":N,"data":{...}}</c>.
/// </summary>
/// <param name="EventId">The row's id (the envelope's <c>evt_</c> number); ids are not in commit order.</param>
/// <param name="Position">The place in commit order; readers page by it.</param>
/// <param name="OrgId">The organization whose ledger changed.</param>
/// <param name="Type">One of <see cref="OutboxEventTypes.InOutbox"/>.</param>
/// <param name="CreatedAt">Unix milliseconds: the time of the ledger change.</param>
/// <param name="Payload">The whole JSON envelope, as sent.</param>
public sealed record OutboxEvent(long EventId, long Position, long OrgId, string Type, long CreatedAt, string Payload);
