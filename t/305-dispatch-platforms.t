# Every platform and every pushed event type end to end: WNS toasts and
# Web Push reach the hub well formed, the "added to a chat" events push to
# the right person, a phone-number recipient (PSTN call) is found by "4:".

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Util;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('305-dispatch-platforms');
my $srv = $t->srv;

$srv->write_conf(http => $t->hubs_conf, server => <<'SERVER');
        location = /eg { acs_notify_eventgrid hub=main voip_hub=voip; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=;
        }
SERVER
$srv->start;

my $P = '8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-';
my $BOB = "${P}578d-7d05-83fe-084822000f6d";
my $DAVE = "${P}5cbb-38f3-88f7-084822002454";

my $WNS = 'https://wns2-par02p.notify.windows.com/w/?token=AwYAAAB%2bBob';
my $WEB = 'https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBhIGJvYg';
is($srv->register($BOB, 'pc', platform => 'wns', handle => $WNS), 201, 'Bob: a Windows device');
is($srv->register($BOB, 'web', platform => 'browser', handle => $WEB,
                  p256dh => 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM',
                  auth => 'tBHItJI5svbpez7KI4CCXg'), 201, 'Bob: a browser');
is($srv->register($DAVE, 'phone', platform => 'fcmv1', handle => 'dave-fcm'), 201, 'Dave: an Android phone');
is($srv->register('4:+18005550199', 'desk', platform => 'apns', handle => 'ab12' x 16), 201,
   'a phone number\'s device');

# a chat message to Bob: WNS toast and Web Push
my $m = $t->mark;
my ($st) = $t->deliver('/eg', fixture('eg-chat-message-received.json'));
is($st, 200, 'chat message delivered');
my @j = $t->since($m);
my ($wns) = grep { $_->{format} eq 'windows' } @j;
my ($web) = grep { $_->{format} eq 'browser' } @j;

ok($wns && $wns->{status} == 201, 'WNS push accepted by the hub') or diag explain \@j;
is($wns->{headers}{'x-wns-type'}, 'wns/toast', 'X-WNS-Type: wns/toast');
like($wns->{headers}{'content-type'}, qr{^application/xml}, 'XML content type');
like($wns->{body}, qr{^<toast><visual><binding template="ToastGeneric"><text>Alice</text><text>Are we still on for 3pm\?</text></binding></visual></toast>$},
     'a toast with the sender and the text');

ok($web && $web->{status} == 201, 'Web Push accepted by the hub') or diag explain $web;
is($web->{headers}{auth}, 'tBHItJI5svbpez7KI4CCXg', 'the Auth header carries the subscription secret');
like($web->{headers}{p256dh}, qr/^BNcR/, 'the P256DH header carries the key');
is($web->{json}{title}, 'Alice', 'browser payload title');
is($web->{json}{body}, 'Are we still on for 3pm?', 'browser payload body');

# Dave was added to a thread (thread-level event): he gets the push
$m = $t->mark;
($st) = $t->deliver('/eg', fixture('eg-chat-thread-participant-added.json'));
is($st, 200, 'ChatThreadParticipantAdded delivered');
my ($dave) = grep { $_->{handle} eq 'dave-fcm' } $t->since($m);
ok($dave && $dave->{status} == 201, 'the added participant gets a push') or diag explain [$t->since($m)];
like($dave->{json}{message}{notification}{body} // '', qr/added/i, 'telling him he was added');

# the user-level event of the same: Bob (already a member) is told
$m = $t->mark;
($st) = $t->deliver('/eg', fixture('eg-chat-participant-added-to-thread-with-user.json'));
is($st, 200, 'ChatParticipantAddedToThreadWithUser delivered');
my @bob = grep { $_->{handle} eq $WNS || $_->{handle} eq $WEB } $t->since($m);
is(scalar @bob, 2, 'the recipient member gets a push on each device');

# a PSTN call to an ACS phone number: the recipient key is "4:" + number
my $call = fresh(fixture('eg-incoming-call.json'));
$call =~ s/"to": \{.*?\n      \},/"to": {"kind": "phoneNumber", "phoneNumber": {"value": "+18005550199"}},/s;
$call =~ s/e80026e7/f80026e7/;
$m = $t->mark;
($st) = $t->deliver('/eg', $call);
is($st, 200, 'a call to a phone number delivered');
my ($desk) = grep { $_->{handle} eq 'ab12' x 16 } $t->since($m);
ok($desk && $desk->{status} == 201, 'the phone number\'s device gets the call alert')
    or diag explain [$t->since($m)];
like($desk->{json}{aps}{alert}{body} // '', qr/Incoming call from Alice/, 'an "Incoming call" alert');

$srv->stop;
my @bad = $srv->bad_lines;
is(join("\n", @bad), '', 'no alert, crit or emerg');

undef $t;
done_testing();
