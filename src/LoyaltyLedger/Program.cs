using LoyaltyLedger.Server.Cli;

// The one executable: `serve` runs the HTTP service; the other commands administer the ledger.
return await Commands.RunAsync(args);
