using System.Xml.Linq;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Support;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.Repositories;

namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>
/// The data-protection key ring (what encrypts the console's session cookies and antiforgery tokens)
/// kept in the ledger's database, not in a directory of one machine: sessions survive a restart, and
/// every server sharing the database accepts the cookies of the others. Keys are read when the
/// framework loads the ring (at first use, then about once a day) and written when it makes a new one
/// (every 90 days), so the synchronous calls the framework's interface asks for block rarely.
/// </summary>
/// <remarks>
/// The keys are stored unencrypted, like the framework's own file-system default: whoever can read
/// the database can read the ledger and its sessions anyway.
/// </remarks>
public sealed class ConsoleKeyRing(LedgerDatabase db, TimeProvider clock) : IXmlRepository
{
    public IReadOnlyCollection<XElement> GetAllElements() =>
        ConsoleSessionRecords.KeyRingAsync(db, CancellationToken.None).GetAwaiter().GetResult().Select(XElement.Parse).ToList();

    public void StoreElement(XElement element, string friendlyName) =>
        ConsoleSessionRecords.AddKeyAsync(db, friendlyName, element.ToString(SaveOptions.DisableFormatting), clock.GetUtcNow().ToUnixTimeMilliseconds(),
            CancellationToken.None).GetAwaiter().GetResult();

    public static void Register(IServiceCollection services)
    {
        services.AddDataProtection().SetApplicationName("LoyaltyLedger console");
        services.AddOptions<KeyManagementOptions>()
            .Configure<LedgerDatabase, TimeProvider>((options, db, clock) => options.XmlRepository = new ConsoleKeyRing(db, clock));
    }
}
