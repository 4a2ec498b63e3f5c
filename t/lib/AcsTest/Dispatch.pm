package AcsTest::Dispatch;

# The set-up shared by the end-to-end dispatch tests: nginx as in
# production (AcsTest::Server) and the Notification Hubs stand-in
# (AcsTest::FakeNH) whose journal is the witness.
#
#   my $t = AcsTest::Dispatch->new('310-templates');
#   $t->srv->write_conf(http => $t->hubs_conf . '...', server => '...');
#   my ($status, $headers, $body, $seconds) = $t->deliver('/eg', $json);
#   my @pushes = $t->since($mark);        # journal entries after $mark

use strict;
use AcsTest::Defaults;
use warnings;

use Time::HiRes qw(time);
use AcsTest::Server;
use AcsTest::FakeNH;

our %EG = ('aeg-event-type' => 'Notification',
           'Content-Type' => 'application/json');

sub new {
    my ($class, $name) = @_;
    my $srv = AcsTest::Server->new($name);
    my $dir = $srv->root . '/nh';
    my $nh = AcsTest::FakeNH->start(
        dir       => $dir,
        namespace => 'acs-test-ns',
        hubs      => ['acs-push', 'acs-voip'],
        key_name  => 'DefaultFullSharedAccessSignature',
        key       => 'c2FtcGxlLXNoYXJlZC1hY2Nlc3Mta2V5LW5vdC1yZWFsPQ==',
        keys      => { ListenOnly => ['bGlzdGVuLW9ubHkta2V5LW5vdC1yZWFsLTAxMjM0NQ==',
                                      'listen'],
                       SendOnly   => ['c2VuZC1vbmx5LWtleS1ub3QtcmVhbC0wMTIzNDU2Nzg=',
                                      'send'] },
        rights    => 'manage',
    );
    for my $f (['nh.conn', undef], ['nh-listen.conn', 'ListenOnly'],
               ['nh-send.conn', 'SendOnly']) {
        open my $fh, '>', "$dir/$f->[0]" or die $!;
        print $fh $nh->connection_string($f->[1] ? ($f->[1]) : ()), "\n";
        close $fh;
    }
    return bless { srv => $srv, nh => $nh, dir => $dir }, $class;
}

sub srv { $_[0]{srv} }
sub nh  { $_[0]{nh} }
sub dir { $_[0]{dir} }

# the registry and the hubs every test uses: main, voip, listen (a rule
# without Send), badca (an unrelated CA), down (nothing listens)
sub hubs_conf {
    my ($self) = @_;
    my ($dir, $port, $ca, $other) = ($self->{dir}, $self->{nh}->port,
                                     $self->{nh}->ca, $self->{nh}->other_ca);
    my $opts = "connect_to=127.0.0.1:$port ca_file=$ca timeout=2s";
    return <<"HTTP";
    acs_notify_registry $dir/../registry;
    acs_notify_hub main connection_string=file:$dir/nh.conn hub=acs-push $opts;
    acs_notify_hub voip connection_string=file:$dir/nh.conn hub=acs-voip $opts;
    acs_notify_hub listen connection_string=file:$dir/nh-listen.conn hub=acs-push $opts;
    acs_notify_hub badca connection_string=file:$dir/nh.conn hub=acs-push connect_to=127.0.0.1:$port ca_file=$other;
    acs_notify_hub down connection_string=file:$dir/nh.conn hub=acs-push connect_to=127.0.0.1:1 ca_file=$ca timeout=1s;
HTTP
}

# POST an Event Grid notification: (status, headers, body, seconds)
sub deliver {
    my ($self, $path, $body, %headers) = @_;
    my $t0 = time;
    my ($st, $h, $b) = $self->{srv}->request(POST => $path, $body,
                                             { %EG, %headers });
    return ($st, $h, $b, time - $t0);
}

# the journal's length now, and the entries after such a mark
sub mark  { my @all = $_[0]{nh}->requests; return scalar @all }
sub since {
    my ($self, $n) = @_;
    my @all = $self->{nh}->requests;
    return @all[$n .. $#all];
}

sub DESTROY {
    my ($self) = @_;
    $self->{srv}->stop if $self->{srv};
    $self->{nh}->stop if $self->{nh};
}

1;
