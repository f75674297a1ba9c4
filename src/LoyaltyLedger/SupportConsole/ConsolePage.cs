using System.Globalization;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Components;

namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>What every console page has: the request, the signed-in key, the ledger and the clock.</summary>
public abstract class ConsolePage : ComponentBase
{
    [CascadingParameter] protected HttpContext Http { get; set; } = default!;
    [Inject] protected LedgerDatabase Db { get; set; } = default!;
    [Inject] protected TimeProvider Clock { get; set; } = default!;
    [Inject] protected NavigationManager Navigation { get; set; } = default!;

    protected ConsoleUser User => ConsoleUser.From(Http.User);
    protected CancellationToken Aborted => Http.RequestAborted;

    /// <summary>Answers this page with <paramref name="status"/> (the page still renders its own message).</summary>
    protected void Answer(int status) => Http.Response.StatusCode = status;

    /// <summary>A fresh key for a form that writes: a double click or a resubmitted page posts once.</summary>
    protected static string NewFormKey() => Guid.NewGuid().ToString("N");

    protected static string Id(long id) => id.ToString(CultureInfo.InvariantCulture);
}
